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
    // Escape closes the dialog wherever the focus is (a control that disappeared leaves it on
    // the page body, outside the dialog).
    let escape = window_event_listener(leptos::ev::keydown, move |ev| {
        if ev.key() == "Escape" && open.get_untracked() {
            open.set(false);
        }
    });
    on_cleanup(move || escape.remove());
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
    // Each effect reads one signal and writes the other only on a real change: a write notifies
    // even when the value is the same, and two effects answering each other would never settle.
    Effect::new(move |_| {
        let chosen = choice.with(Option::is_some);
        if open.get_untracked() != chosen {
            open.set(chosen);
        }
    });
    Effect::new(move |_| {
        if !open.get() && choice.with_untracked(Option::is_some) {
            choice.set(None);
        }
    });
    open
}
