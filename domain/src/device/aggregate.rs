//! The device's state and the rules of its commands.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    DeviceAction, DeviceCommand, DeviceError, DeviceEvent, DeviceStatus, EnrollDevice, MAX_FINGERPRINT_CHARS,
    MAX_LABEL_CHARS, MAX_METADATA_BYTES, MAX_REASON_CHARS, MAX_USER_AGENT_CHARS, rotation,
};
use crate::protocol::{KeyId, PublicKeySpki};
use crate::text::single_line;

/// The Device aggregate. Empty until the device is enrolled.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Device {
    enrolled: Option<EnrolledDevice>,
}

/// An enrolled device as its history describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrolledDevice {
    id: Uuid,
    api_key_id: Uuid,
    key_id: KeyId,
    public_key: PublicKeySpki,
    /// Every key this device held before the current one, oldest first.
    retired_key_ids: Vec<KeyId>,
    label: String,
    fingerprint: String,
    user_agent: Option<String>,
    metadata: serde_json::Value,
    enrolled_ip: Option<IpAddr>,
    enrollment_code_id: Option<Uuid>,
    status: DeviceStatus,
    /// Whether the device has ever been active; decides where reactivation leads.
    ever_active: bool,
    /// The reason given for the current suspension or the revocation.
    status_reason: Option<String>,
    enrolled_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl Device {
    /// The device, if it has been enrolled.
    pub fn enrolled(&self) -> Option<&EnrolledDevice> {
        self.enrolled.as_ref()
    }

    pub fn status(&self) -> Option<DeviceStatus> {
        self.enrolled.as_ref().map(|d| d.status)
    }

    /// Whether requests signed by this device may be accepted.
    pub fn can_sign(&self) -> bool {
        self.status() == Some(DeviceStatus::Active)
    }

    fn current(&self) -> Result<&EnrolledDevice, DeviceError> {
        match &self.enrolled {
            None => Err(DeviceError::NotEnrolled),
            Some(d) if d.status == DeviceStatus::Revoked => Err(DeviceError::Revoked),
            Some(d) => Ok(d),
        }
    }

    fn enroll(&self, cmd: EnrollDevice) -> Result<DeviceEvent, DeviceError> {
        if self.enrolled.is_some() {
            return Err(DeviceError::AlreadyEnrolled);
        }
        cmd.public_key.check_key_id(&cmd.key_id).map_err(DeviceError::KeyIdMismatch)?;
        let label = single_line(&cmd.label, MAX_LABEL_CHARS).map_err(DeviceError::InvalidLabel)?;
        let fingerprint =
            single_line(&cmd.fingerprint, MAX_FINGERPRINT_CHARS).map_err(DeviceError::InvalidFingerprint)?;
        let user_agent = cmd
            .user_agent
            .as_deref()
            .filter(|ua| !ua.trim().is_empty())
            .map(|ua| single_line(ua, MAX_USER_AGENT_CHARS))
            .transpose()
            .map_err(DeviceError::InvalidUserAgent)?;
        if !cmd.metadata.is_object() {
            return Err(DeviceError::MetadataNotObject);
        }
        let size = serde_json::to_vec(&cmd.metadata).map(|v| v.len()).unwrap_or(usize::MAX);
        if size > MAX_METADATA_BYTES {
            return Err(DeviceError::MetadataTooLarge { size, max: MAX_METADATA_BYTES });
        }
        Ok(DeviceEvent::DeviceEnrolled {
            device_id: cmd.device_id,
            api_key_id: cmd.api_key_id,
            key_id: cmd.key_id,
            public_key: cmd.public_key,
            label,
            fingerprint,
            user_agent,
            metadata: cmd.metadata,
            ip: cmd.ip,
            initial_status: cmd.initial_status,
            enrollment_code_id: cmd.enrollment_code_id,
            at: cmd.at,
        })
    }

    fn decide(&self, command: DeviceCommand) -> Result<DeviceEvent, DeviceError> {
        use DeviceStatus::{Active, Pending, Suspended};
        let invalid = |action, from| Err(DeviceError::InvalidTransition { action, from });
        match command {
            DeviceCommand::Enroll(cmd) => self.enroll(cmd),
            DeviceCommand::Approve { by, at } => match self.current()?.status {
                Pending => Ok(DeviceEvent::DeviceApproved { by, at }),
                from => invalid(DeviceAction::Approve, from),
            },
            DeviceCommand::Suspend { by, reason, at } => match self.current()?.status {
                Pending | Active => {
                    Ok(DeviceEvent::DeviceSuspended { by, reason: reason_text(&reason)?, at })
                }
                from => invalid(DeviceAction::Suspend, from),
            },
            DeviceCommand::Reactivate { by, at } => {
                let device = self.current()?;
                match device.status {
                    Suspended => Ok(DeviceEvent::DeviceReactivated {
                        by,
                        status: if device.ever_active { Active } else { Pending },
                        at,
                    }),
                    from => invalid(DeviceAction::Reactivate, from),
                }
            }
            DeviceCommand::Revoke { by, reason, at } => {
                self.current()?;
                Ok(DeviceEvent::DeviceRevoked { by, reason: reason_text(&reason)?, at })
            }
            DeviceCommand::Rename { by, label, at } => {
                let device = self.current()?;
                let label = single_line(&label, MAX_LABEL_CHARS).map_err(DeviceError::InvalidLabel)?;
                if label == device.label {
                    return Err(DeviceError::LabelUnchanged(label));
                }
                Ok(DeviceEvent::DeviceRenamed { by, previous_label: device.label.clone(), label, at })
            }
            DeviceCommand::RotateKey { new_public_key, proof, at } => {
                let device = self.current()?;
                if device.status != Active {
                    return invalid(DeviceAction::RotateKey, device.status);
                }
                let new_key_id = new_public_key.key_id();
                if new_key_id == device.key_id {
                    return Err(DeviceError::KeyUnchanged);
                }
                if device.retired_key_ids.contains(&new_key_id) {
                    return Err(DeviceError::KeyPreviouslyUsed);
                }
                rotation::verify(&device.public_key, device.id, &new_public_key, &proof)?;
                Ok(DeviceEvent::DeviceKeyRotated {
                    old_key_id: device.key_id.clone(),
                    new_key_id,
                    new_public_key,
                    at,
                })
            }
        }
    }
}

fn reason_text(reason: &str) -> Result<String, DeviceError> {
    single_line(reason, MAX_REASON_CHARS).map_err(DeviceError::InvalidReason)
}

impl EnrolledDevice {
    pub fn id(&self) -> Uuid {
        self.id
    }
    /// The project (API key) the device belongs to.
    pub fn api_key_id(&self) -> Uuid {
        self.api_key_id
    }
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }
    pub fn public_key(&self) -> &PublicKeySpki {
        &self.public_key
    }
    /// The keys this device held before, oldest first.
    pub fn retired_key_ids(&self) -> &[KeyId] {
        &self.retired_key_ids
    }
    pub fn label(&self) -> &str {
        &self.label
    }
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_deref()
    }
    pub fn metadata(&self) -> &serde_json::Value {
        &self.metadata
    }
    pub fn enrolled_ip(&self) -> Option<IpAddr> {
        self.enrolled_ip
    }
    pub fn enrollment_code_id(&self) -> Option<Uuid> {
        self.enrollment_code_id
    }
    pub fn status(&self) -> DeviceStatus {
        self.status
    }
    /// Why the device is suspended or revoked, when it is.
    pub fn status_reason(&self) -> Option<&str> {
        self.status_reason.as_deref()
    }
    pub fn enrolled_at(&self) -> DateTime<Utc> {
        self.enrolled_at
    }
    /// When the last event changed the device.
    pub fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }
}

impl Aggregate for Device {
    const TYPE: &'static str = "device";
    type Command = DeviceCommand;
    type Event = DeviceEvent;
    type Error = DeviceError;
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
        if let DeviceEvent::DeviceEnrolled {
            device_id,
            api_key_id,
            key_id,
            public_key,
            label,
            fingerprint,
            user_agent,
            metadata,
            ip,
            initial_status,
            enrollment_code_id,
            at,
        } = event
        {
            let status = DeviceStatus::from(initial_status);
            self.enrolled = Some(EnrolledDevice {
                id: device_id,
                api_key_id,
                key_id,
                public_key,
                retired_key_ids: Vec::new(),
                label,
                fingerprint,
                user_agent,
                metadata,
                enrolled_ip: ip,
                enrollment_code_id,
                status,
                ever_active: status == DeviceStatus::Active,
                status_reason: None,
                enrolled_at: at,
                updated_at: at,
            });
            return;
        }
        // Events other than enrollment only ever follow it; the history is ours, so a gap would be
        // a store bug, and ignoring the event is the least harmful reading of it.
        let Some(device) = self.enrolled.as_mut() else {
            return;
        };
        match event {
            DeviceEvent::DeviceEnrolled { .. } => {}
            DeviceEvent::DeviceApproved { at, .. } => {
                device.status = DeviceStatus::Active;
                device.ever_active = true;
                device.updated_at = at;
            }
            DeviceEvent::DeviceSuspended { reason, at, .. } => {
                device.status = DeviceStatus::Suspended;
                device.status_reason = Some(reason);
                device.updated_at = at;
            }
            DeviceEvent::DeviceReactivated { status, at, .. } => {
                device.status = status;
                device.ever_active |= status == DeviceStatus::Active;
                device.status_reason = None;
                device.updated_at = at;
            }
            DeviceEvent::DeviceRevoked { reason, at, .. } => {
                device.status = DeviceStatus::Revoked;
                device.status_reason = Some(reason);
                device.updated_at = at;
            }
            DeviceEvent::DeviceRenamed { label, at, .. } => {
                device.label = label;
                device.updated_at = at;
            }
            DeviceEvent::DeviceKeyRotated { old_key_id, new_key_id, new_public_key, at } => {
                device.retired_key_ids.push(old_key_id);
                device.key_id = new_key_id;
                device.public_key = new_public_key;
                device.updated_at = at;
            }
        }
    }
}
