//! The signed-in frame: top bar, navigation (only the pages the role may open) and the page.

use leptos::prelude::*;
use leptos_router::components::{A, Outlet, Redirect};

use crate::components::language_switch::LanguageSwitch;
use crate::components::theme_switch::ThemeSwitch;
use crate::i18n::{t, t_string, use_i18n};
use crate::server_fns::auth::{SessionInfo, get_session, logout};

/// The signed-in user, for every page inside the frame.
#[derive(Clone)]
pub struct Session(pub SessionInfo);

pub fn use_session() -> SessionInfo {
    expect_context::<Session>().0
}

/// Sends a visitor without a session to the sign-in page; otherwise shows the frame.
///
/// The frame, and the page in its `<Outlet/>`, render once and outside any `<Suspense/>`: a
/// suspense walks its children again while it waits, and a page under it would be built, and its
/// data loaded, once per walk, with the browser then hydrating the first build's data into the
/// last build's markup. So the session is known before rendering: on the server from the request
/// (its middleware has read the cookies), in the browser from the value the server rendered with.
/// Only a client-side arrival from a page outside the frame asks the server and waits.
#[component]
pub fn Shell() -> impl IntoView {
    match SharedValue::new(rendered_for).into_inner() {
        Some(Rendered { session }) => frame_for(session),
        None => view! { <FetchedShell /> }.into_any(),
    }
}

/// Whom the server rendered the frame for (nobody: a redirect to sign in).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Rendered {
    session: Option<SessionInfo>,
}

/// On the server, the request's session; `None` in the browser outside hydration.
fn rendered_for() -> Option<Rendered> {
    #[cfg(feature = "ssr")]
    return Some(Rendered { session: crate::server_fns::auth::current_session() });
    #[cfg(not(feature = "ssr"))]
    None
}

fn frame_for(session: Option<SessionInfo>) -> AnyView {
    match session {
        Some(info) => {
            provide_context(Session(info));
            view! { <Frame /> }.into_any()
        }
        None => view! { <Redirect path="/login" /> }.into_any(),
    }
}

/// The frame for a client-side arrival: asks the server who is signed in first.
#[component]
fn FetchedShell() -> impl IntoView {
    let i18n = use_i18n();
    let session = Resource::new(|| (), |_| get_session());
    view! {
        <Suspense fallback=move || view! { <p class="loading">{t!(i18n, common.loading)}</p> }>
            {move || Suspend::new(async move {
                match session.await {
                    Ok(session) => frame_for(session),
                    Err(_) => {
                        view! { <p class="error-note" role="alert">{t!(i18n, errors.unavailable)}</p> }.into_any()
                    }
                }
            })}
        </Suspense>
    }
}

#[component]
fn Frame() -> impl IntoView {
    let i18n = use_i18n();
    let session = use_session();
    let can = session.can;
    let sign_out = Action::new(|_: &()| logout());
    Effect::new(move |_| {
        if sign_out.value().get().is_some() {
            let _ = window().location().set_href("/login");
        }
    });
    let link = move |href: &'static str, label: Signal<String>, testid: &'static str| {
        view! { <li><A href=href attr:data-testid=testid>{label}</A></li> }
    };
    view! {
        <a class="skip-link" href="#main">{t!(i18n, nav.skip)}</a>
        <header class="topbar">
            <A href="/" attr:class="brand">{t!(i18n, app_name)}</A>
            <div class="topbar-tools">
                <LanguageSwitch />
                <ThemeSwitch />
                <A href="/profile" attr:class="who" attr:data-testid="who">
                    <span>{session.name.clone()}</span>
                    <span class="role" data-testid="role">{role_text(i18n, session.role.clone())}</span>
                </A>
                <button type="button" class="secondary" data-testid="sign-out" on:click=move |_| {
                    sign_out.dispatch(());
                }>{t!(i18n, nav.sign_out)}</button>
            </div>
        </header>
        <div class="frame">
            <nav class="sidebar" aria-label=move || t_string!(i18n, nav.label).to_string()>
                <ul>
                    {link("/", Signal::derive(move || t_string!(i18n, nav.overview).to_string()), "nav-overview")}
                    {link("/devices", Signal::derive(move || t_string!(i18n, nav.devices).to_string()), "nav-devices")}
                    {link("/keys", Signal::derive(move || t_string!(i18n, nav.keys).to_string()), "nav-keys")}
                    {link("/policies", Signal::derive(move || t_string!(i18n, nav.policies).to_string()), "nav-policies")}
                    {can.read_audit.then(|| link("/audit", Signal::derive(move || t_string!(i18n, nav.audit).to_string()), "nav-audit"))}
                    {can.read_users.then(|| link("/users", Signal::derive(move || t_string!(i18n, nav.users).to_string()), "nav-users"))}
                    {link("/integration", Signal::derive(move || t_string!(i18n, nav.integration).to_string()), "nav-integration")}
                    {link("/profile", Signal::derive(move || t_string!(i18n, nav.profile).to_string()), "nav-profile")}
                </ul>
            </nav>
            <main id="main" class="content" tabindex="-1">
                <Outlet />
            </main>
        </div>
    }
}

/// The frame of the pages for visitors (sign-in, first-run setup): the brand, the language switch
/// and one card. `redirect` resolves to where the visitor belongs instead, if anywhere.
#[component]
pub fn VisitorPage(redirect: Resource<Option<String>>, children: Children) -> impl IntoView {
    let i18n = use_i18n();
    view! {
        <header class="topbar">
            <span class="brand">{t!(i18n, app_name)}</span>
            <div class="topbar-tools"><LanguageSwitch /></div>
        </header>
        <main id="main" class="auth-page">
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    redirect.await.map(|path| view! { <Redirect path=path /> })
                })}
            </Suspense>
            <section class="card auth-card">{children()}</section>
        </main>
    }
}

/// The translated name of a role.
pub fn role_text(
    i18n: leptos_i18n::I18nContext<crate::i18n::Locale>,
    role: String,
) -> impl Fn() -> String + Send + Sync + 'static {
    move || match role.as_str() {
        "admin" => t_string!(i18n, roles.admin).to_string(),
        "operator" => t_string!(i18n, roles.operator).to_string(),
        "auditor" => t_string!(i18n, roles.auditor).to_string(),
        other => other.to_owned(),
    }
}
