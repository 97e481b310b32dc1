//! A modal dialog: focus moves into it when it opens, Escape or the close button closes it, and
//! the page behind is inert to the pointer.

use leptos::html;
use leptos::prelude::*;

use crate::i18n::{t, use_i18n};

#[component]
pub fn Dialog(
    open: RwSignal<bool>,
    /// The id of the dialog's heading, which names it for screen readers.
    labelled_by: &'static str,
    #[prop(into)] title: Signal<String>,
    children: ChildrenFn,
) -> impl IntoView {
    let i18n = use_i18n();
    let panel = NodeRef::<html::Div>::new();
    Effect::new(move |_| {
        if open.get()
            && let Some(panel) = panel.get()
        {
            let _ = panel.focus();
        }
    });
    let children = StoredValue::new(children);
    view! {
        <Show when=move || open.get()>
            <div class="modal-backdrop" on:click=move |_| open.set(false)></div>
            <div
                class="modal"
                role="dialog"
                aria-modal="true"
                aria-labelledby=labelled_by
                tabindex="-1"
                node_ref=panel
                on:keydown=move |ev| {
                    if ev.key() == "Escape" {
                        open.set(false);
                    }
                }
            >
                <header class="modal-header">
                    <h2 id=labelled_by>{title}</h2>
                    <button
                        type="button"
                        class="icon-button"
                        aria-label=move || t!(i18n, common.close)().to_html()
                        on:click=move |_| open.set(false)
                    >
                        "×"
                    </button>
                </header>
                <div class="modal-body">{children.read_value()()}</div>
            </div>
        </Show>
    }
}

/// The open state of a dialog that asks about a chosen action: open while `choice` holds one,
/// and closing the dialog clears the choice.
pub fn open_while_chosen<T: Clone + Send + Sync + 'static>(choice: RwSignal<Option<T>>) -> RwSignal<bool> {
    let open = RwSignal::new(false);
    Effect::new(move |_| open.set(choice.with(Option::is_some)));
    Effect::new(move |_| {
        if !open.get() {
            choice.set(None);
        }
    });
    open
}
