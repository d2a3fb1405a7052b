//! `Deno.env`: the session's own variables, never the host process's environment.

use std::collections::HashMap;

use deno_core::OpState;
use deno_error::JsErrorBox;

use super::{session, session_mut};

/// A variable's value, or `null` when unset.
#[derive(serde::Serialize)]
pub(crate) struct EnvValue(Option<String>);

/// `Deno.env.get(name)`.
#[deno_core::op2]
#[serde]
pub(crate) fn op_cb_env_get(state: &mut OpState, #[string] name: String) -> Result<EnvValue, JsErrorBox> {
    let session = session(state)?;
    session.permissions.check_env(&name)?;
    Ok(EnvValue(session.env.get(&name).cloned()))
}

/// `Deno.env.set(name, value)`.
#[deno_core::op2(fast)]
pub(crate) fn op_cb_env_set(
    state: &mut OpState,
    #[string] name: String,
    #[string] value: String,
) -> Result<(), JsErrorBox> {
    let session = session_mut(state)?;
    session.permissions.check_env(&name)?;
    if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
        return Err(JsErrorBox::type_error(format!("Key contains invalid characters: {name:?}")));
    }
    session.env.insert(name, value);
    Ok(())
}

/// `Deno.env.delete(name)`.
#[deno_core::op2(fast)]
pub(crate) fn op_cb_env_delete(state: &mut OpState, #[string] name: String) -> Result<(), JsErrorBox> {
    let session = session_mut(state)?;
    session.permissions.check_env(&name)?;
    session.env.remove(&name);
    Ok(())
}

/// `Deno.env.toObject()`: needs access to every variable.
#[deno_core::op2]
#[serde]
pub(crate) fn op_cb_env_object(state: &mut OpState) -> Result<HashMap<String, String>, JsErrorBox> {
    let session = session(state)?;
    session.permissions.check_env_all()?;
    Ok(session.env.clone())
}
