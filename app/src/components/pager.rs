//! Previous / next through a paged list, with "x–y of z".

use leptos::prelude::*;

use crate::format::number;
use crate::i18n::{t, t_string, use_i18n};

#[component]
pub fn Pager(
    offset: RwSignal<i64>,
    #[prop(into)] limit: i64,
    #[prop(into)] total: Signal<i64>,
) -> impl IntoView {
    let i18n = use_i18n();
    let range = move || {
        let locale = i18n.get_locale();
        let total = total.get();
        let first = if total == 0 { 0 } else { offset.get() + 1 };
        let last = (offset.get() + limit).min(total);
        t_string!(
            i18n,
            common.range,
            first = number(locale, first),
            last = number(locale, last),
            total = number(locale, total)
        )
        .to_string()
    };
    view! {
        <nav class="pager" aria-label=move || t_string!(i18n, common.pages).to_string()>
            <button
                type="button"
                class="secondary"
                disabled=move || offset.get() == 0
                on:click=move |_| offset.update(|o| *o = (*o - limit).max(0))
            >
                {t!(i18n, common.previous)}
            </button>
            <span aria-live="polite">{range}</span>
            <button
                type="button"
                class="secondary"
                disabled=move || { offset.get() + limit >= total.get() }
                on:click=move |_| offset.update(|o| *o += limit)
            >
                {t!(i18n, common.next)}
            </button>
        </nav>
    }
}
