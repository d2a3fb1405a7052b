//! From what an agent sends to what the engine runs: TypeScript types stripped with `oxc`,
//! and each `execute_code` cell shaped so that it behaves like a REPL turn.
//!
//! Every cell runs as a classic script. Its top-level declarations (`const`, `let`, `var`,
//! `class`, imported names) become globals declared with `var` and assigned where the
//! declaration stood, so the next cell sees them and may declare them again (as in Deno's
//! REPL; `const` is not enforced across cells). A cell that needs module syntax
//! (top-level `await`, `import`, `export`) runs inside an async function:
//! `import x from "./m.ts"` becomes `await import("./m.ts")`, function declarations are
//! published as globals, and `export` is dropped (nothing imports a cell).

use std::fmt::Write as _;
use std::path::Path;

use oxc::allocator::Allocator;
use oxc::ast::ast::{
    ArrowFunctionExpression, AwaitExpression, Declaration, ExportDefaultDeclarationKind, ForOfStatement, Function,
    ImportDeclaration, ImportDeclarationSpecifier, Program, Statement, VariableDeclaration, VariableDeclarationKind,
};
use oxc::ast_visit::{walk, Visit};
use oxc::codegen::Codegen;
use oxc::diagnostics::OxcDiagnostic;
use oxc::parser::Parser;
use oxc::semantic::ScopeFlags;
use oxc::semantic::SemanticBuilder;
use oxc::span::{GetSpan, SourceType, Span};
use oxc::transformer::{TransformOptions, Transformer};

/// A cell ready to run: classic-script source for `execute_script`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cell {
    /// The script to run.
    pub script: String,
    /// Whether it was wrapped in an async function (its completion value is a promise).
    pub wrapped: bool,
}

/// Turns cell source (JavaScript or TypeScript) into a [`Cell`]; a syntax error comes back
/// as `SyntaxError: <message> at <line>:<column>`.
pub(crate) fn compile_cell(source: &str) -> Result<Cell, String> {
    let js = strip_types(source, SourceType::ts())?;
    let allocator = Allocator::default();
    let parsed = Parser::new(&allocator, &js, SourceType::mjs()).parse();
    if let Some(error) = parsed.diagnostics.first() {
        return Err(syntax_error(&js, error));
    }
    let wrapped = needs_module(&parsed.program);
    let mut rewriter =
        Rewriter { js: &js, declared: Vec::new(), hoisted: String::new(), body: String::new(), modules: 0 };
    rewriter.program(&parsed.program);
    let prelude =
        if rewriter.declared.is_empty() { String::new() } else { format!("var {};\n", rewriter.declared.join(", ")) };
    let script = if wrapped {
        format!("{prelude}(async () => {{\n{}{}\n}})()", rewriter.hoisted, rewriter.body)
    } else {
        format!("{prelude}{}", rewriter.body)
    };
    Ok(Cell { script, wrapped })
}

/// Whether a program uses module syntax: `import`/`export` or top-level `await`.
fn needs_module(program: &Program<'_>) -> bool {
    if program.body.iter().any(|statement| statement.is_module_declaration()) {
        return true;
    }
    let mut finder = TopLevelAwait::default();
    finder.visit_program(program);
    finder.found
}

/// Finds `await` (and `for await`, `await using`) outside every function.
#[derive(Default)]
struct TopLevelAwait {
    found: bool,
}

impl<'a> Visit<'a> for TopLevelAwait {
    fn visit_function(&mut self, _it: &Function<'a>, _flags: ScopeFlags) {}

    fn visit_arrow_function_expression(&mut self, _it: &ArrowFunctionExpression<'a>) {}

    fn visit_await_expression(&mut self, _it: &AwaitExpression<'a>) {
        self.found = true;
    }

    fn visit_for_of_statement(&mut self, it: &ForOfStatement<'a>) {
        self.found |= it.r#await;
        walk::walk_for_of_statement(self, it);
    }

    fn visit_variable_declaration(&mut self, it: &VariableDeclaration<'a>) {
        self.found |= it.kind == VariableDeclarationKind::AwaitUsing;
        walk::walk_variable_declaration(self, it);
    }
}

/// Strips TypeScript from a module file (`.ts`, `.mts`, `.tsx`); plain JavaScript modules
/// need no stripping.
pub(crate) fn strip_module(source: &str, path: &str) -> Result<String, String> {
    let source_type = if path.ends_with(".tsx") { SourceType::tsx() } else { SourceType::ts() };
    strip_types(source, source_type)
}

/// Parses `source` as `source_type`, removes the types and prints JavaScript.
fn strip_types(source: &str, source_type: SourceType) -> Result<String, String> {
    let allocator = Allocator::default();
    let parsed = Parser::new(&allocator, source, source_type).parse();
    if let Some(error) = parsed.diagnostics.first() {
        return Err(syntax_error(source, error));
    }
    let mut program = parsed.program;
    let semantic = SemanticBuilder::new().build(&program);
    let mut options = TransformOptions::default();
    // Keep imports whose names look unused: they may be imported for their side effects.
    options.typescript.only_remove_type_imports = true;
    let transformed = Transformer::new(&allocator, Path::new("cell.ts"), &options)
        .build_with_scoping(semantic.semantic.into_scoping(), &mut program);
    if let Some(error) = transformed.diagnostics.first() {
        return Err(syntax_error(source, error));
    }
    Ok(Codegen::new().build(&program).code)
}

fn syntax_error(source: &str, error: &OxcDiagnostic) -> String {
    let position = error.labels.first().map(|label| {
        let offset = usize::try_from(label.offset()).unwrap_or(usize::MAX).min(source.len());
        let before = source.get(..offset).unwrap_or(source);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!(" at {line}:{column}")
    });
    format!("SyntaxError: {}{}", error.message, position.unwrap_or_default())
}

struct Rewriter<'s> {
    js: &'s str,
    /// Names the cell declares at top level, declared as globals (`var`) before it runs.
    declared: Vec<String>,
    /// Statements that must run before the body (function declarations made global).
    hoisted: String,
    body: String,
    modules: usize,
}

impl<'s> Rewriter<'s> {
    fn declare(&mut self, name: &str) {
        if !self.declared.iter().any(|n| n == name) {
            self.declared.push(name.to_owned());
        }
    }

    fn text(&self, span: Span) -> &'s str {
        &self.js[span.start as usize..span.end as usize]
    }

    fn program(&mut self, program: &Program<'_>) {
        for directive in &program.directives {
            let text = self.text(directive.span);
            self.body.push_str(text);
            self.body.push('\n');
        }
        for statement in &program.body {
            self.statement(statement);
        }
    }

    fn statement(&mut self, statement: &Statement<'_>) {
        match statement {
            Statement::ImportDeclaration(import) => self.import(import),
            Statement::ExportDeclaration(export) => self.declaration(&export.declaration),
            Statement::ExportNamedDeclaration(_) => {}
            Statement::ExportFromDeclaration(export) => self.side_effect_import(export.source.span),
            Statement::ExportAllDeclaration(export) => self.side_effect_import(export.source.span),
            Statement::ExportDefaultDeclaration(export) => match &export.declaration {
                ExportDefaultDeclarationKind::FunctionDeclaration(f) if f.id.is_some() => {
                    self.function(f.name().map(|n| n.as_str().to_owned()), f.span)
                }
                ExportDefaultDeclarationKind::ClassDeclaration(c) if c.id.is_some() => {
                    self.class(c.name().map(|n| n.as_str().to_owned()), c.span)
                }
                other => {
                    let text = self.text(other.span());
                    let _ = writeln!(self.body, ";({text});");
                }
            },
            Statement::VariableDeclaration(declaration) => self.variables(declaration),
            Statement::FunctionDeclaration(f) => self.function(f.name().map(|n| n.as_str().to_owned()), f.span),
            Statement::ClassDeclaration(c) => self.class(c.name().map(|n| n.as_str().to_owned()), c.span),
            other => {
                let text = self.text(other.span());
                self.body.push_str(text);
                self.body.push('\n');
            }
        }
    }

    fn declaration(&mut self, declaration: &Declaration<'_>) {
        match declaration {
            Declaration::VariableDeclaration(v) => self.variables(v),
            Declaration::FunctionDeclaration(f) => self.function(f.name().map(|n| n.as_str().to_owned()), f.span),
            Declaration::ClassDeclaration(c) => self.class(c.name().map(|n| n.as_str().to_owned()), c.span),
            other => {
                let text = self.text(other.span());
                self.body.push_str(text);
                self.body.push('\n');
            }
        }
    }

    /// `const a = 1, {b} = o;` becomes `;(a = 1, {b} = o);`, assignments to globals.
    fn variables(&mut self, declaration: &VariableDeclaration<'_>) {
        match declaration.kind {
            VariableDeclarationKind::Var | VariableDeclarationKind::Let | VariableDeclarationKind::Const => {}
            // `using` declarations dispose at the end of their scope: keep them local.
            _ => {
                let text = self.text(declaration.span);
                self.body.push_str(text);
                self.body.push('\n');
                return;
            }
        }
        let mut assignments = Vec::new();
        for declarator in &declaration.declarations {
            for name in declarator.id.get_binding_identifiers() {
                self.declare(name.name.as_str());
            }
            let target = self.text(declarator.id.span());
            match &declarator.init {
                Some(init) => assignments.push(format!("{target} = {}", self.text(init.span()))),
                None if declaration.kind == VariableDeclarationKind::Var => {}
                None => assignments.push(format!("{target} = undefined")),
            }
        }
        if !assignments.is_empty() {
            let _ = writeln!(self.body, ";({});", assignments.join(", "));
        }
    }

    /// A function declaration stays where it is (hoisted in the async function) and is
    /// published as a global before the body runs, as a script would have it.
    fn function(&mut self, name: Option<String>, span: Span) {
        let text = self.text(span);
        self.body.push_str(text);
        self.body.push('\n');
        if let Some(name) = name {
            let _ = writeln!(self.hoisted, "globalThis[{name:?}] = {name};");
        }
    }

    fn class(&mut self, name: Option<String>, span: Span) {
        let text = self.text(span);
        match name {
            Some(name) => {
                self.declare(&name);
                let _ = writeln!(self.body, ";{name} = {text};");
            }
            None => {
                let _ = writeln!(self.body, ";({text});");
            }
        }
    }

    fn import(&mut self, import: &ImportDeclaration<'_>) {
        let Some(specifiers) = import.specifiers.as_ref().filter(|s| !s.is_empty()) else {
            self.side_effect_import(import.source.span);
            return;
        };
        let module = format!("$cb_module_{}", self.modules);
        self.modules += 1;
        let source = self.text(import.source.span);
        let options = import
            .with_clause
            .as_ref()
            .and_then(|clause| {
                let text = self.text(clause.span);
                text.find('{').map(|brace| format!(", {{ with: {} }}", &text[brace..]))
            })
            .unwrap_or_default();
        let _ = writeln!(self.body, "const {module} = await import({source}{options});");
        for specifier in specifiers {
            match specifier {
                ImportDeclarationSpecifier::ImportSpecifier(s) => {
                    self.declare(s.local.name.as_str());
                    let imported = s.imported.name();
                    let _ = writeln!(self.body, ";{} = {module}[{:?}];", s.local.name.as_str(), imported.as_str());
                }
                ImportDeclarationSpecifier::ImportDefaultSpecifier(s) => {
                    self.declare(s.local.name.as_str());
                    let _ = writeln!(self.body, ";{} = {module}.default;", s.local.name.as_str());
                }
                ImportDeclarationSpecifier::ImportNamespaceSpecifier(s) => {
                    self.declare(s.local.name.as_str());
                    let _ = writeln!(self.body, ";{} = {module};", s.local.name.as_str());
                }
            }
        }
    }

    fn side_effect_import(&mut self, source: Span) {
        let source = self.text(source);
        let _ = writeln!(self.body, "await import({source});");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typescript_scripts_stay_scripts() {
        let cell = compile_cell("const greeting: string = 'hi';\nconsole.log(greeting);").unwrap();
        assert!(!cell.wrapped);
        assert!(cell.script.starts_with("var greeting;\n;(greeting = \"hi\");"), "{}", cell.script);
    }

    #[test]
    fn top_level_await_becomes_global_assignments() {
        let cell = compile_cell(
            "const a: number = await f();\nlet b;\nfunction g() {}\nclass C {}\nimport x, { y as z } from './m.ts';",
        )
        .unwrap();
        assert!(cell.wrapped);
        let s = &cell.script;
        assert!(s.starts_with("var a, b, C, x, z;\n(async () => {"), "{s}");
        for expected in [
            ";(a = await f());",
            ";(b = undefined);",
            "globalThis[\"g\"] = g;",
            ";C = class C {};",
            "const $cb_module_0 = await import(\"./m.ts\");",
            ";x = $cb_module_0.default;",
            ";z = $cb_module_0[\"y\"];",
        ] {
            assert!(s.contains(expected), "missing {expected:?} in\n{s}");
        }
    }

    #[test]
    fn syntax_errors_name_the_position() {
        let err = compile_cell("let x = ;").unwrap_err();
        assert!(err.starts_with("SyntaxError: ") && err.contains("1:"), "{err}");
    }
}
