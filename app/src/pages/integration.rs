//! Copy-ready snippets for this server, and a live connection test.

use leptos::prelude::*;

use crate::components::copy_button::CopyButton;
use crate::i18n::{t, t_string, use_i18n};

#[component]
pub fn IntegrationPage() -> impl IntoView {
    let i18n = use_i18n();
    // The page's own origin, once in the browser (the server does not know how it is reached).
    let origin = RwSignal::new("https://keyguard.example.com".to_owned());
    Effect::new(move |_| {
        if let Ok(o) = window().location().origin() {
            origin.set(o);
        }
    });
    let rust = move || {
        format!(
            "use keyguard_sdk::{{DeviceKey, FileKeyStore, KeyStore, ServerUrl, SignedClient, Signer, check, enroll}};\n\nlet server = ServerUrl::parse(\"{}\")?;\nlet store = FileKeyStore::new(\"device.key\");\nlet key = match store.load()? {{\n    Some(key) => key,\n    None => {{\n        let key = DeviceKey::generate()?;\n        store.save(&key)?;\n        enroll(&server, \"<project key>\", &key, Some(\"<enrollment code>\"), \"my-laptop\").await?;\n        key\n    }}\n}};\nlet client = SignedClient::new(server, Signer::new(key, \"<project key>\")?)?;\nlet body = serde_json::json!({{ \"model\": \"gpt-4o-mini\", \"messages\": [] }});\nlet response = check(client.post(\"/api/v1/proxy/openai/v1/chat/completions\").json(&body).send().await?).await?;",
            origin.get()
        )
    };
    let typescript = move || {
        format!(
            "import {{ KeyGuardClient }} from '@keyguard/sdk';\n\nconst server = '{0}';\nconst client = new KeyGuardClient({{ apiKey: '<project key>' }});\n\n// Enroll once: the SDK makes the key pair, the application sends the payload.\nconst payload = await client.enroll('my-laptop');\nawait fetch(`${{server}}/api/v1/keyguard/enroll`, {{\n  method: 'POST',\n  headers: {{ 'content-type': 'application/json', 'x-keyguard-api-key': '<project key>' }},\n  body: JSON.stringify({{ ...payload, enrollmentCode: '<enrollment code>' }}),\n}});\n\n// Sign the full path, exactly as sent.\nconst url = '/api/v1/proxy/openai/v1/chat/completions';\nconst body = JSON.stringify({{ model: 'gpt-4o-mini', messages: [] }});\nconst headers = await client.signRequest({{ method: 'POST', url, body }});\nconst res = await fetch(server + url, {{ method: 'POST', headers: {{ ...headers, 'content-type': 'application/json' }}, body }});",
            origin.get()
        )
    };
    let cli = move || {
        format!(
            "keyguard-device enroll --server {} --api-key <project key> --code <enrollment code>\nkeyguard-device status\nkeyguard-device call POST /api/v1/proxy/openai/v1/chat/completions --data '{{\"model\":\"gpt-4o-mini\",\"messages\":[]}}' --stream",
            origin.get()
        )
    };
    let check = Action::new_local(|_: &()| async move {
        let started = js_sys::Date::now();
        let ok = wasm_bindgen_futures::JsFuture::from(window().fetch_with_str("/api/v1/health"))
            .await
            .ok()
            .and_then(|r| leptos::wasm_bindgen::JsCast::dyn_into::<web_sys::Response>(r).ok())
            .is_some_and(|r| r.ok());
        (ok, (js_sys::Date::now() - started).round() as i64)
    });
    view! {
        <div class="page-header"><h1>{t!(i18n, integration.title)}</h1></div>
        <p class="muted">{t!(i18n, integration.intro)}</p>
        <section class="card">
            <h2>{t!(i18n, integration.connection)}</h2>
            <button type="button" data-testid="connection-test" on:click=move |_| { check.dispatch(()); }>{t!(i18n, integration.test)}</button>
            <p aria-live="polite" data-testid="connection-result">
                {move || check.value().get().map(|(ok, ms)| if ok {
                    t_string!(i18n, integration.ok, ms = ms.to_string()).to_string()
                } else {
                    t_string!(i18n, integration.down).to_string()
                })}
            </p>
        </section>
        <Snippet title=Signal::derive(move || t_string!(i18n, integration.rust).to_string()) code=Signal::derive(rust) />
        <Snippet title=Signal::derive(move || t_string!(i18n, integration.typescript).to_string()) code=Signal::derive(typescript) />
        <Snippet title=Signal::derive(move || t_string!(i18n, integration.cli).to_string()) code=Signal::derive(cli) />
    }
}

#[component]
fn Snippet(title: Signal<String>, code: Signal<String>) -> impl IntoView {
    view! {
        <section class="card">
            <h2>{title}</h2>
            <pre class="snippet" dir="ltr">{code}</pre>
            <CopyButton value=code />
        </section>
    }
}
