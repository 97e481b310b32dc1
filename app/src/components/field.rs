//! A labelled form input. Every input of the dashboard has a visible label.

use leptos::prelude::*;

#[component]
pub fn Field(
    /// The input's `name` (and, prefixed, its id).
    name: &'static str,
    #[prop(into)] label: Signal<String>,
    #[prop(default = "text")] kind: &'static str,
    #[prop(optional, into)] value: Option<RwSignal<String>>,
    #[prop(optional, into)] hint: Option<Signal<String>>,
    #[prop(optional)] required: bool,
    #[prop(optional)] autocomplete: Option<&'static str>,
    #[prop(optional, into)] placeholder: Option<String>,
) -> impl IntoView {
    let id = format!("field-{name}");
    let hint_id = format!("{id}-hint");
    let described = hint.map(|_| hint_id.clone());
    let value = value.unwrap_or_default();
    view! {
        <div class="field">
            <label for=id.clone()>{label}</label>
            <input
                id=id
                name=name
                type=kind
                required=required
                autocomplete=autocomplete
                placeholder=placeholder
                aria-describedby=described
                prop:value=move || value.get()
                on:input=move |ev| value.set(event_target_value(&ev))
            />
            {hint.map(|hint| view! { <small id=hint_id class="hint">{hint}</small> })}
        </div>
    }
}
