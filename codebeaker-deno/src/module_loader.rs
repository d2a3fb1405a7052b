//! Loads the modules cells import (`import('./calculator.ts')`): `file:` URLs only, read
//! through the session's read permission, TypeScript stripped on the way in. Remote
//! (`https:`, `npm:`, `jsr:`) imports are refused: a session has no package cache.
//!
//! A runtime lives as long as its session, and ES modules are cached by specifier, so an
//! agent that fixes a file and imports it again would get the old (possibly failed)
//! module forever. Workspace specifiers therefore carry a version of their content
//! (`file:///workspace/stats.ts?v=…`): an edited file is a new module, an unchanged one
//! stays cached as the language expects.
//!
//! A module's source is read into memory whole (twice: to version it, then to load it),
//! so sources above [`MAX_MODULE_BYTES`] are refused with an error that says so, and no
//! read goes beyond that cap whatever the file's size when it was looked at.

use std::cell::RefCell;
use std::hash::{Hash as _, Hasher as _};
use std::rc::Rc;

use deno_core::error::ModuleLoaderError;
use deno_core::{
    resolve_import, ModuleLoadOptions, ModuleLoadReferrer, ModuleLoadResponse, ModuleLoader, ModuleSource,
    ModuleSourceCode, ModuleSpecifier, ModuleType, ResolutionKind,
};
use deno_error::JsErrorBox;

use crate::permissions::{Access, Permissions};
use crate::transpile;

/// Largest module source a session may import (bigger sources are data, not code).
pub(crate) const MAX_MODULE_BYTES: u64 = 8 * 1024 * 1024;

/// Reads a module's source, refusing sources above [`MAX_MODULE_BYTES`] (the read stops
/// there, however big the file is or grows).
fn read_source(path: &std::path::Path, specifier: &ModuleSpecifier) -> Result<Vec<u8>, JsErrorBox> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => JsErrorBox::new("NotFound", format!("Module not found \"{specifier}\".")),
        _ => JsErrorBox::generic(format!("{e}: reading module \"{specifier}\"")),
    })?;
    let mut source = Vec::new();
    file.take(MAX_MODULE_BYTES + 1)
        .read_to_end(&mut source)
        .map_err(|e| JsErrorBox::generic(format!("{e}: reading module \"{specifier}\"")))?;
    if source.len() as u64 > MAX_MODULE_BYTES {
        return Err(JsErrorBox::range_error(format!(
            "module \"{specifier}\" is larger than {} MiB, the largest source a session may import",
            MAX_MODULE_BYTES / (1024 * 1024)
        )));
    }
    Ok(source)
}

/// The session's permissions as the loader sees them; empty while the runtime is a spare.
pub(crate) type SharedPermissions = Rc<RefCell<Option<Rc<Permissions>>>>;

/// The module loader of one runtime.
pub(crate) struct WorkspaceModuleLoader {
    pub permissions: SharedPermissions,
}

impl WorkspaceModuleLoader {
    /// A version of the file behind `specifier`, from its content; `None` when it cannot
    /// be read (missing, or not allowed), which `load` then reports properly.
    fn content_version(&self, specifier: &ModuleSpecifier) -> Option<String> {
        let permissions = self.permissions.borrow().clone()?;
        let path = file_path(specifier).ok()?;
        let resolved = permissions.check_path(&path, Access::Read).ok()?;
        let content = read_source(&resolved.host, specifier).ok()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        content.hash(&mut hasher);
        Some(format!("{:016x}", hasher.finish()))
    }

    fn load_file(&self, specifier: &ModuleSpecifier) -> Result<ModuleSource, JsErrorBox> {
        if specifier.scheme() != "file" {
            return Err(JsErrorBox::type_error(format!(
                "Unsupported scheme \"{}\" for module \"{specifier}\": CodeBeaker sessions import files from /workspace only",
                specifier.scheme()
            )));
        }
        let permissions =
            self.permissions.borrow().clone().ok_or_else(|| JsErrorBox::generic("this runtime has no session yet"))?;
        let path = file_path(specifier)?;
        let resolved = permissions.check_path(&path, Access::Read)?;
        let code = String::from_utf8(read_source(&resolved.host, specifier)?)
            .map_err(|_| JsErrorBox::type_error(format!("module \"{specifier}\" is not valid UTF-8")))?;
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
        let mut resolved = resolve_import(specifier, referrer).map_err(JsErrorBox::from_err)?;
        if resolved.scheme() == "file" {
            resolved.set_query(None);
            if let Some(version) = self.content_version(&resolved) {
                resolved.set_query(Some(&format!("v={version}")));
            }
        }
        Ok(resolved)
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

/// The path of a `file:` URL, percent escapes decoded (`my%20file.ts` is `my file.ts`).
fn file_path(specifier: &ModuleSpecifier) -> Result<String, JsErrorBox> {
    specifier
        .to_file_path()
        .map(|path| path.to_string_lossy().into_owned())
        .map_err(|()| JsErrorBox::type_error(format!("\"{specifier}\" is not a file path")))
}
