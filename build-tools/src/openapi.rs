//! OpenAPI → Rust with progenitor.
//!
//! Every spec is generated with the same settings, kept here in one place (oxide.rs'
//! xtask does the same): the builder interface (`client.get_sandbox().sandbox_id(id)
//! .send().await`), one extension trait per OpenAPI tag gathered in `prelude`, and
//! `PartialEq` on every type on top of typify's `Serialize`, `Deserialize`, `Debug` and
//! `Clone`, so a server can use the same types for its requests and responses and tests
//! can compare them.
//!
//! A spec may have its `types` module written to a file of its own: `e2b-envd` includes the
//! types without a feature (envd's server reads and writes them) and the client, which needs
//! reqwest, behind `client`.
//!
//! The token stream is printed with `prettyplease` (which turns `#[doc = ".."]` into `///`
//! comments) and then formatted by `rustfmt`, so the checked-in file passes `cargo fmt
//! --check` and regenerating it gives the same bytes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use progenitor::{GenerationSettings, Generator, HooksMode, InterfaceStyle, TagStyle};
use syn::visit_mut::VisitMut;

use crate::GeneratedFile;
use crate::format::{GENERATED_HEADER, rustfmt};

/// One OpenAPI document and where its client goes.
struct Spec {
    /// The spec, relative to the workspace root.
    input: &'static str,
    /// The generated file, relative to the workspace root.
    output: &'static str,
    /// Where the contents of the `types` module go instead, if they are split from `output`.
    /// The including crate then declares `mod types` beside the client.
    types_output: Option<&'static str>,
    /// Whether the crate must implement `progenitor_client::ClientHooks` for its `Client`.
    /// `e2b-api` does (a tracing span per operation); `e2b-envd` keeps the default hooks.
    hooks: HooksMode,
}

const SPECS: &[Spec] = &[
    Spec {
        input: "openapi/e2b-api.yml",
        output: "crates/e2b-api/src/generated.rs",
        types_output: None,
        hooks: HooksMode::Expected,
    },
    Spec {
        input: "openapi/volume-content.yml",
        output: "crates/e2b-api/src/volume_content/generated.rs",
        types_output: None,
        hooks: HooksMode::Optional,
    },
    Spec {
        input: "openapi/envd.yml",
        output: "crates/e2b-envd/src/generated/http/client.rs",
        types_output: Some("crates/e2b-envd/src/generated/http/types.rs"),
        hooks: HooksMode::Optional,
    },
];

/// Generates the REST clients from `openapi/`.
pub(crate) fn generate(root: &Path) -> Result<Vec<GeneratedFile>> {
    let mut files = Vec::new();
    for spec in SPECS {
        let generated = || format!("generating {} from {}", spec.output, spec.input);
        let mut client =
            generate_one(&root.join(spec.input), spec.hooks).with_context(generated)?;
        if let Some(types_output) = spec.types_output {
            let types = take_types_module(&mut client).with_context(generated)?;
            files.push(GeneratedFile {
                path: PathBuf::from(types_output),
                contents: print(&types)?,
            });
        }
        files.push(GeneratedFile {
            path: PathBuf::from(spec.output),
            contents: print(&client)?,
        });
    }
    Ok(files)
}

/// Removes the top-level `types` module from `client` and returns its items as a file.
fn take_types_module(client: &mut syn::File) -> Result<syn::File> {
    let position = client
        .items
        .iter()
        .position(|item| matches!(item, syn::Item::Mod(m) if m.ident == "types"))
        .context("progenitor emitted no `types` module")?;
    let syn::Item::Mod(types) = client.items.remove(position) else {
        unreachable!("the item at `position` is a module");
    };
    let (_, items) = types
        .content
        .context("progenitor emitted `mod types;` without a body")?;
    Ok(syn::File {
        shebang: None,
        attrs: Vec::new(),
        items,
    })
}

/// Prints `file` with the generated-code header, formatted as `cargo fmt` would.
fn print(file: &syn::File) -> Result<String> {
    let printed = space_out_items(&prettyplease::unparse(file));
    rustfmt(&format!("{GENERATED_HEADER}\n{printed}"))
}

/// Generates the client for one spec, with its doc comments as line comments.
fn generate_one(input: &Path, hooks: HooksMode) -> Result<syn::File> {
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let spec: openapiv3::OpenAPI = serde_yaml::from_str(&text)
        .with_context(|| format!("parsing {} as OpenAPI 3.0", input.display()))?;

    let mut settings = GenerationSettings::new();
    settings
        .with_interface(InterfaceStyle::Builder)
        .with_tag(TagStyle::Separate)
        .with_hooks(hooks)
        .with_derive("PartialEq")
        // Sorted maps, so metadata and env vars serialise in a stable order.
        .with_map_type("::std::collections::BTreeMap");
    let mut generator = Generator::new(&settings);
    // progenitor reports unsupported constructs by panicking in a few places; turn those into
    // an error that names the spec instead of a bare backtrace.
    let tokens = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        generator.generate_tokens(&spec)
    }))
    .map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        anyhow::anyhow!("progenitor panicked: {message}")
    })?
    .with_context(|| format!("progenitor rejected {}", input.display()))?;

    let mut file =
        syn::parse_file(&tokens.to_string()).context("progenitor emitted invalid Rust")?;
    DocLines.visit_file_mut(&mut file);
    Ok(file)
}

/// Splits every multi-line `#[doc = "..."]` into one attribute per line, each starting with a
/// space, so the printed code has ordinary `/// text` comments instead of `/** ... */` blocks
/// and `///text` lines.
struct DocLines;

impl VisitMut for DocLines {
    fn visit_attributes_mut(&mut self, attrs: &mut Vec<syn::Attribute>) {
        let mut out = Vec::with_capacity(attrs.len());
        for attr in attrs.drain(..) {
            match doc_text(&attr) {
                Some(text) => {
                    for line in text.trim_end().lines() {
                        let line = line.trim_end();
                        let line = if line.is_empty() || line.starts_with(' ') {
                            line.to_owned()
                        } else {
                            format!(" {line}")
                        };
                        let mut split = attr.clone();
                        split.meta = syn::parse_quote!(doc = #line);
                        out.push(split);
                    }
                }
                None => out.push(attr),
            }
        }
        *attrs = out;
    }

    // `visit_attributes_mut` is not a visitor hook of its own: call it from every node that
    // carries attributes.
    fn visit_item_mut(&mut self, item: &mut syn::Item) {
        if let Some(attrs) = item_attrs(item) {
            self.visit_attributes_mut(attrs);
        }
        syn::visit_mut::visit_item_mut(self, item);
    }

    fn visit_field_mut(&mut self, field: &mut syn::Field) {
        self.visit_attributes_mut(&mut field.attrs);
        syn::visit_mut::visit_field_mut(self, field);
    }

    fn visit_variant_mut(&mut self, variant: &mut syn::Variant) {
        self.visit_attributes_mut(&mut variant.attrs);
        syn::visit_mut::visit_variant_mut(self, variant);
    }

    fn visit_impl_item_fn_mut(&mut self, item: &mut syn::ImplItemFn) {
        self.visit_attributes_mut(&mut item.attrs);
        syn::visit_mut::visit_impl_item_fn_mut(self, item);
    }

    fn visit_trait_item_fn_mut(&mut self, item: &mut syn::TraitItemFn) {
        self.visit_attributes_mut(&mut item.attrs);
        syn::visit_mut::visit_trait_item_fn_mut(self, item);
    }
}

/// The text of a `#[doc = "..."]` attribute, if `attr` is one with a multi-line or unspaced
/// string literal.
fn doc_text(attr: &syn::Attribute) -> Option<String> {
    let syn::Meta::NameValue(meta) = &attr.meta else {
        return None;
    };
    if !meta.path.is_ident("doc") {
        return None;
    }
    let syn::Expr::Lit(syn::ExprLit {
        lit: syn::Lit::Str(text),
        ..
    }) = &meta.value
    else {
        return None;
    };
    let text = text.value();
    (text.contains('\n') || !(text.is_empty() || text.starts_with(' '))).then_some(text)
}

/// The attributes of the item kinds progenitor emits.
fn item_attrs(item: &mut syn::Item) -> Option<&mut Vec<syn::Attribute>> {
    Some(match item {
        syn::Item::Const(i) => &mut i.attrs,
        syn::Item::Enum(i) => &mut i.attrs,
        syn::Item::Fn(i) => &mut i.attrs,
        syn::Item::Impl(i) => &mut i.attrs,
        syn::Item::Mod(i) => &mut i.attrs,
        syn::Item::Struct(i) => &mut i.attrs,
        syn::Item::Trait(i) => &mut i.attrs,
        syn::Item::Type(i) => &mut i.attrs,
        syn::Item::Use(i) => &mut i.attrs,
        _ => return None,
    })
}

/// Puts a blank line after every closing brace of an item at the outer three levels of
/// nesting (what progenitor's own `space_out_items` does), so items do not run together.
fn space_out_items(code: &str) -> String {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = String::with_capacity(code.len() + code.len() / 16);
    for (i, line) in lines.iter().enumerate() {
        out.push_str(line);
        out.push('\n');
        let Some(next) = lines.get(i + 1) else {
            continue;
        };
        let next_indent = next.len() - next.trim_start().len();
        if line.trim() == "}"
            && !next.trim().is_empty()
            && next_indent <= 8
            && !next.trim_start().starts_with('}')
        {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_docs_become_line_comments() {
        let mut file: syn::File = syn::parse_quote! {
            #[doc = "First line\n\nThird line"]
            pub struct S {
                #[doc = "unspaced"]
                pub field: u8,
            }
        };
        DocLines.visit_file_mut(&mut file);
        let printed = prettyplease::unparse(&file);
        assert_eq!(
            printed,
            "/// First line\n///\n/// Third line\npub struct S {\n    /// unspaced\n    pub field: u8,\n}\n"
        );
    }

    #[test]
    fn items_are_spaced_out() {
        let code = "mod a {\n    fn f() {\n    }\n    fn g() {}\n}\nstruct B;\n";
        assert_eq!(
            space_out_items(code),
            "mod a {\n    fn f() {\n    }\n\n    fn g() {}\n}\n\nstruct B;\n"
        );
    }

    #[test]
    fn split_types_leave_the_client_file() {
        let mut client: syn::File = syn::parse_quote! {
            pub use progenitor_client::Error;
            pub mod types {
                pub struct Metrics {}
            }
            pub struct Client {}
        };
        let types = take_types_module(&mut client).unwrap();
        assert_eq!(prettyplease::unparse(&types), "pub struct Metrics {}\n");
        assert_eq!(
            prettyplease::unparse(&client),
            "pub use progenitor_client::Error;\npub struct Client {}\n"
        );
    }

    #[test]
    fn generation_is_deterministic_and_marked() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let first = generate(root).unwrap();
        let second = generate(root).unwrap();
        let split = SPECS.iter().filter(|s| s.types_output.is_some()).count();
        assert_eq!(first.len(), SPECS.len() + split);
        for (a, b) in first.iter().zip(&second) {
            assert!(
                a.contents.starts_with(GENERATED_HEADER),
                "{}",
                a.path.display()
            );
            assert!(
                a.contents == b.contents,
                "{} is not stable",
                a.path.display()
            );
        }
    }
}
