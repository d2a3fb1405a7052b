//! Loads the modules cells import (`import('./calculator.ts')`): `file:` URLs only, read
//! through the session's read permission, TypeScript stripped on the way in. Remote
//! (`https:`, `npm:`, `jsr:`) imports are refused: a session has no package cache.

use std::cell::RefCell;
use std::rc::Rc;

use deno_core::error::ModuleLoaderError;
use deno_core::{
    resolve_import, ModuleLoadOptions, ModuleLoadReferrer, ModuleLoadResponse, ModuleLoader, ModuleSource,
    ModuleSourceCode, ModuleSpecifier, ModuleType, ResolutionKind,
};
use deno_error::JsErrorBox;

use crate::permissions::{Access, Permissions};
use crate::transpile;

/// The session's permissions as the loader sees them; empty while the runtime is a spare.
pub(crate) type SharedPermissions = Rc<RefCell<Option<Rc<Permissions>>>>;

/// The module loader of one runtime.
pub(crate) struct WorkspaceModuleLoader {
    pub permissions: SharedPermissions,
}

impl WorkspaceModuleLoader {
    fn load_file(&self, specifier: &ModuleSpecifier) -> Result<ModuleSource, JsErrorBox> {
        if specifier.scheme() != "file" {
            return Err(JsErrorBox::type_error(format!(
                "Unsupported scheme \"{}\" for module \"{specifier}\": CodeBeaker sessions import files from /workspace only",
                specifier.scheme()
            )));
        }
        let permissions =
            self.permissions.borrow().clone().ok_or_else(|| JsErrorBox::generic("this runtime has no session yet"))?;
        let path = percent_decode(specifier.path());
        let resolved = permissions.check_path(&path, Access::Read)?;
        let code = std::fs::read_to_string(&resolved.host).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => JsErrorBox::new("NotFound", format!("Module not found \"{specifier}\".")),
            _ => JsErrorBox::generic(format!("{e}: reading module \"{specifier}\"")),
        })?;
        let extension = path.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase()).unwrap_or_default();
        let (module_type, code) = match extension.as_str() {
            "ts" | "mts" | "cts" | "tsx" => {
                (ModuleType::JavaScript, transpile::strip_module(&code, &path).map_err(JsErrorBox::type_error)?)
            }
            "json" => (ModuleType::Json, code),
            _ => (ModuleType::JavaScript, code),
        };
        Ok(ModuleSource::new(module_type, ModuleSourceCode::String(code.into()), specifier, None))
    }
}

impl ModuleLoader for WorkspaceModuleLoader {
    fn resolve(
        &self,
        specifier: &str,
        referrer: &str,
        _kind: ResolutionKind,
    ) -> Result<ModuleSpecifier, ModuleLoaderError> {
        resolve_import(specifier, referrer).map_err(JsErrorBox::from_err)
    }

    fn load(
        &self,
        specifier: &ModuleSpecifier,
        _referrer: Option<&ModuleLoadReferrer>,
        _options: ModuleLoadOptions,
    ) -> ModuleLoadResponse {
        ModuleLoadResponse::Sync(self.load_file(specifier))
    }
}

/// Decodes `%xx` escapes of a URL path (`my%20file.ts` is `my file.ts`).
fn percent_decode(path: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_escapes_are_decoded() {
        assert_eq!(super::percent_decode("/workspace/my%20file.ts"), "/workspace/my file.ts");
        assert_eq!(super::percent_decode("/workspace/100%"), "/workspace/100%");
    }
}
