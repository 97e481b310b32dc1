//! Copies a value to the clipboard and says so.

use leptos::prelude::*;

use crate::i18n::{t, use_i18n};

#[component]
pub fn CopyButton(
    #[prop(into)] value: Signal<String>,
    #[prop(optional)] testid: &'static str,
) -> impl IntoView {
    let i18n = use_i18n();
    let copied = RwSignal::new(false);
    let copy = move |_| {
        let text = value.get_untracked();
        let clipboard = window().navigator().clipboard();
        let promise = clipboard.write_text(&text);
        leptos::task::spawn_local(async move {
            if wasm_bindgen_futures::JsFuture::from(promise).await.is_ok() {
                copied.set(true);
            }
        });
    };
    view! {
        <button type="button" class="secondary" data-testid=testid on:click=copy>
            {move || if copied.get() { t!(i18n, common.copied).into_any() } else { t!(i18n, common.copy).into_any() }}
        </button>
    }
}
