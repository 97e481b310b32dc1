//! A policy's state and the rules of its commands.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

use super::{PolicyCommand, PolicyError, PolicyEvent, PolicyScope, PolicySettings};
use crate::metadata::Actor;

/// The Policy aggregate of one scope.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Policy {
    scope: Option<PolicyScope>,
    settings: Option<PolicySettings>,
    updated_by: Option<Actor>,
    updated_at: Option<DateTime<Utc>>,
}

impl Policy {
    /// The scope, once the policy was first set.
    pub fn scope(&self) -> Option<PolicyScope> {
        self.scope
    }

    /// The settings in force at this scope; `None` if never set or cleared.
    pub fn settings(&self) -> Option<&PolicySettings> {
        self.settings.as_ref()
    }

    pub fn updated_by(&self) -> Option<&Actor> {
        self.updated_by.as_ref()
    }

    pub fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.updated_at
    }

    fn decide(&self, command: PolicyCommand) -> Result<PolicyEvent, PolicyError> {
        match command {
            PolicyCommand::Set { scope, settings, by, at } => {
                if let Some(expected) = self.scope
                    && expected != scope
                {
                    return Err(PolicyError::ScopeMismatch { expected, requested: scope });
                }
                if scope != PolicyScope::Global && settings.is_empty() {
                    return Err(PolicyError::EmptyOverride);
                }
                let settings = settings.validated(scope)?;
                if self.settings.as_ref() == Some(&settings) {
                    return Err(PolicyError::Unchanged);
                }
                Ok(PolicyEvent::PolicySet { scope, settings, by, at })
            }
            PolicyCommand::Clear { by, at } => match (self.scope, &self.settings) {
                (Some(PolicyScope::Global), _) => Err(PolicyError::GlobalCannotBeCleared),
                (Some(scope), Some(_)) => Ok(PolicyEvent::PolicyCleared { scope, by, at }),
                _ => Err(PolicyError::NotSet),
            },
        }
    }
}

impl Aggregate for Policy {
    const TYPE: &'static str = "policy";
    type Command = PolicyCommand;
    type Event = PolicyEvent;
    type Error = PolicyError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = self.decide(command)?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            PolicyEvent::PolicySet { scope, settings, by, at } => {
                self.scope = Some(scope);
                self.settings = Some(settings);
                self.updated_by = Some(by);
                self.updated_at = Some(at);
            }
            PolicyEvent::PolicyCleared { scope, by, at } => {
                self.scope = Some(scope);
                self.settings = None;
                self.updated_by = Some(by);
                self.updated_at = Some(at);
            }
        }
    }
}
