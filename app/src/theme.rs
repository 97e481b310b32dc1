//! Light, dark or the system's choice, remembered in a cookie so the server renders the page in
//! the right colours from the first byte.

use leptos::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Theme {
    Light,
    Dark,
    #[default]
    System,
}

impl Theme {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "light" => Some(Self::Light),
            "dark" => Some(Self::Dark),
            "system" => Some(Self::System),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Light => "light",
            Self::Dark => "dark",
            Self::System => "system",
        }
    }
}

/// The cookie that carries the theme (`light`, `dark` or `system`), readable by the page.
const COOKIE: &str = "kg_theme";

/// The theme the request (on the server) or the document (in the browser) carries.
pub fn initial_theme() -> Theme {
    cookie_value().as_deref().and_then(Theme::parse).unwrap_or_default()
}

#[cfg(feature = "ssr")]
fn cookie_value() -> Option<String> {
    let parts = use_context::<http::request::Parts>()?;
    let values = parts.headers.get_all(http::header::COOKIE).iter().filter_map(|v| v.to_str().ok());
    crate::backend::cookies::read(values, COOKIE)
}

#[cfg(not(feature = "ssr"))]
fn cookie_value() -> Option<String> {
    use leptos::wasm_bindgen::JsCast as _;
    let document = document().dyn_into::<web_sys::HtmlDocument>().ok()?;
    let cookies = document.cookie().ok()?;
    cookies
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// Remembers the theme in the cookie the server reads when rendering (for a year). Written here, in
/// the order the user chooses, rather than by a request per change: the answers to a few quick
/// changes can arrive out of order and leave an older choice in the cookie.
#[cfg(not(feature = "ssr"))]
pub fn remember(theme: Theme) {
    use leptos::wasm_bindgen::JsCast as _;
    let Ok(document) = document().dyn_into::<web_sys::HtmlDocument>() else { return };
    let secure = window().location().protocol().is_ok_and(|p| p == "https:");
    let cookie = format!(
        "{COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax{}",
        theme.as_str(),
        if secure { "; Secure" } else { "" }
    );
    if document.set_cookie(&cookie).is_err() {
        leptos::logging::warn!("the theme could not be remembered");
    }
}

/// Changes happen in the browser only.
#[cfg(feature = "ssr")]
pub fn remember(_theme: Theme) {}

/// The current theme, shared by the switch and the page root.
#[derive(Clone, Copy)]
pub struct ThemeSignal(pub RwSignal<Theme>);

pub fn provide_theme() -> ThemeSignal {
    let signal = ThemeSignal(RwSignal::new(initial_theme()));
    provide_context(signal);
    signal
}

pub fn use_theme() -> ThemeSignal {
    expect_context::<ThemeSignal>()
}
