//! Dashboard users: admins create them, change roles, disable and enable them, reset passwords.

use leptos::prelude::*;

use crate::components::badge::Badge;
use crate::components::dialog::Dialog;
use crate::components::error_note::ErrorNote;
use crate::components::layout::{role_text, use_session};
use crate::format::datetime;
use crate::i18n::{t, t_string, use_i18n};
use crate::server_fns::users::{CreateUser, UserChange, UserRow, change_user, list_users};

#[component]
pub fn UsersPage() -> impl IntoView {
    let i18n = use_i18n();
    let session = use_session();
    let search = RwSignal::new(String::new());
    let version = RwSignal::new(0_u32);
    let users = Resource::new(move || (search.get(), version.get()), |(s, _)| list_users(s, 0));
    let create = ServerAction::<CreateUser>::new();
    let create_open = RwSignal::new(false);
    Effect::new(move |_| {
        if let Some(Ok(_)) = create.value().get() {
            create_open.set(false);
            version.update(|v| *v += 1);
        }
    });
    let create_error = Signal::derive(move || create.value().get().and_then(Result::err));
    let manage = session.can.manage_users;
    let me = session.id.clone();
    view! {
        <div class="page-header">
            <h1>{t!(i18n, users.title)}</h1>
            {manage.then(|| view! {
                <button type="button" data-testid="create-user" on:click=move |_| create_open.set(true)>{t!(i18n, users.create)}</button>
            })}
        </div>
        <div class="filters">
            <div class="field grow">
                <label for="user-search">{t!(i18n, devices.search)}</label>
                <input id="user-search" type="search" on:input=move |ev| search.set(event_target_value(&ev)) />
            </div>
        </div>
        <Transition fallback=move || view! { <p class="loading">{t!(i18n, common.loading)}</p> }>
            {move || users.get().map(|result| match result {
                Err(err) => view! { <ErrorNote error=Signal::derive(move || Some(err.clone())) /> }.into_any(),
                Ok(page) => {
                    let me = me.clone();
                    view! {
                        <div class="table-wrap">
                            <table data-testid="users-table">
                                <thead><tr>
                                    <th scope="col">{t!(i18n, users.name)}</th>
                                    <th scope="col">{t!(i18n, users.email)}</th>
                                    <th scope="col">{t!(i18n, users.role)}</th>
                                    <th scope="col">{t!(i18n, devices.status)}</th>
                                    <th scope="col">{t!(i18n, users.created)}</th>
                                    {manage.then(|| view! { <th scope="col">{t!(i18n, users.actions)}</th> })}
                                </tr></thead>
                                <tbody>
                                    {page.items.into_iter().map(|user| {
                                        let is_me = user.id == me;
                                        view! { <UserRowView user manage=manage && !is_me version /> }
                                    }).collect_view()}
                                </tbody>
                            </table>
                        </div>
                    }.into_any()
                }
            })}
        </Transition>
        <Dialog open=create_open labelled_by="create-user-title" title=Signal::derive(move || t_string!(i18n, users.create).to_string())>
            <ActionForm action=create attr:data-testid="create-user-form">
                <div class="field"><label for="new-user-name">{t!(i18n, users.name)}</label><input id="new-user-name" name="name" required /></div>
                <div class="field"><label for="new-user-email">{t!(i18n, users.email)}</label><input id="new-user-email" name="email" type="email" required /></div>
                <div class="field">
                    <label for="new-user-role">{t!(i18n, users.role)}</label>
                    <select id="new-user-role" name="role">
                        <option value="auditor">{t!(i18n, roles.auditor)}</option>
                        <option value="operator">{t!(i18n, roles.operator)}</option>
                        <option value="admin">{t!(i18n, roles.admin)}</option>
                    </select>
                </div>
                <div class="field"><label for="new-user-password">{t!(i18n, users.password)}</label><input id="new-user-password" name="password" type="password" autocomplete="new-password" minlength="12" required /></div>
                <ErrorNote error=create_error />
                <button type="submit" data-testid="create-user-submit">{t!(i18n, users.create)}</button>
            </ActionForm>
        </Dialog>
    }
}

#[component]
fn UserRowView(user: UserRow, manage: bool, version: RwSignal<u32>) -> impl IntoView {
    let i18n = use_i18n();
    let id = user.id.clone();
    let change = Action::new(move |c: &UserChange| change_user(id.clone(), c.clone()));
    Effect::new(move |_| {
        if let Some(Ok(_)) = change.value().get() {
            version.update(|v| *v += 1);
        }
    });
    let error = Signal::derive(move || change.value().get().and_then(Result::err));
    let password = RwSignal::new(String::new());
    let disabled = user.disabled;
    let status = if disabled { "disabled" } else { "active" };
    let role = user.role.clone();
    view! {
        <tr data-testid="user-row">
            <td>{user.name.clone()}</td>
            <td>{user.email.clone()}</td>
            <td>{role_text(i18n, user.role.clone())}</td>
            <td><Badge status=status /></td>
            <td>{move || datetime(i18n.get_locale(), user.created_at)}</td>
            {manage.then(|| view! {
                <td class="row-actions">
                    <label class="visually-hidden" for=format!("role-{}", user.id)>{t!(i18n, users.role)}</label>
                    <select id=format!("role-{}", user.id) prop:value=role.clone()
                        on:change=move |ev| { change.dispatch(UserChange::Role(event_target_value(&ev))); }>
                        <option value="admin">{t!(i18n, roles.admin)}</option>
                        <option value="operator">{t!(i18n, roles.operator)}</option>
                        <option value="auditor">{t!(i18n, roles.auditor)}</option>
                    </select>
                    {if disabled {
                        view! { <button type="button" class="secondary" on:click=move |_| { change.dispatch(UserChange::Enable); }>{t!(i18n, users.enable)}</button> }.into_any()
                    } else {
                        view! { <button type="button" class="secondary" on:click=move |_| { change.dispatch(UserChange::Disable(t_string!(i18n, users.disabled_reason).to_string())); }>{t!(i18n, users.disable)}</button> }.into_any()
                    }}
                    <form class="inline" on:submit=move |ev| { ev.prevent_default(); change.dispatch(UserChange::ResetPassword(password.get_untracked())); password.set(String::new()); }>
                        <label class="visually-hidden" for=format!("reset-{}", user.id)>{t!(i18n, users.new_password)}</label>
                        <input id=format!("reset-{}", user.id) type="password" autocomplete="new-password" minlength="12"
                            placeholder=move || t_string!(i18n, users.new_password).to_string()
                            prop:value=move || password.get() on:input=move |ev| password.set(event_target_value(&ev)) />
                        <button type="submit" class="secondary">{t!(i18n, users.reset)}</button>
                    </form>
                    <ErrorNote error />
                </td>
            })}
        </tr>
    }
}
