//! Comparison of two OpenAPI 3.0 documents for wire compatibility: the *expected* document
//! (`openapi/crm.yaml`) against an *actual* one (the server's, normalised to 3.0).
//!
//! The judge is Oxide's `drift`, which walks both documents operation by operation and
//! classifies each change it finds. Every change becomes a [`SpecChange`] with one of two
//! classes: [`ChangeClass::DocumentationOnly`] for what drift calls *trivial* (descriptions,
//! titles, examples, defaults and other schema metadata) and [`ChangeClass::Significant`]
//! for everything drift calls backward-incompatible, forward-incompatible, incompatible or
//! unhandled. Additions count as significant too: the expected document must list all the
//! server does.
//!
//! # What happens before drift runs
//!
//! 1. Both documents must deserialise as `openapiv3::OpenAPI`.
//! 2. **Operations are made self-contained.** References to `components/parameters`,
//!    `components/responses`, `components/requestBodies` and `components/headers` are
//!    inlined into each operation (schema references stay), and a path item's `parameters`
//!    are pushed down into each of its operations. drift resolves such references itself and
//!    merges path-item parameters, so this changes no verdict (a test checks that a
//!    referencing and an inlining document compare equal); but the spec references its
//!    parameters and responses while utoipa inlines them, and self-contained operations let
//!    the checks below report and repair each operation on its own, without touching a
//!    component other operations share.
//! 3. **Content guard.** drift 0.2 panics (`assert!`/`todo!` in `compare_content`) when a
//!    request body or response has media types on one side only, or a schema on one side
//!    only, and (`assert!` in `compare_parameters`) when a path parameter is declared on one
//!    side only. These differences are recorded as significant changes here, then removed
//!    from the copies drift is given, so that drift can compare the rest. drift runs under
//!    `catch_unwind` all the same: a panic becomes [`Error::Drift`], never a crash.
//!
//! # Checks added on top of drift
//!
//! drift 0.2 does not look at everything the wire contract depends on. Each check below
//! fills one gap, and each is tested:
//!
//! - **nullable** (significant): drift sees `nullable` differ but records no change for it.
//!   Both documents are walked in parallel (following `$ref`s and single-element
//!   `allOf`/`oneOf`/`anyOf` wrappers, whose `nullable` counts) and every schema whose
//!   nullability differs is reported.
//! - **parameter serialisation** (significant): drift ignores `style`, `explode`,
//!   `allowReserved` and `allowEmptyValue`, yet `filter` as `deepObject` and as `form` are
//!   different wire formats. Effective values are compared (OpenAPI's defaults applied).
//! - **media types and schemas on one side only** (significant): see the content guard.
//! - **path parameters declared on one side only** (significant): likewise.
//! - **operationId** (significant): drift matches operations by path and method only; the
//!   operationId names the generated client's methods and is part of the contract.
//! - **response headers** (significant): drift ignores them; a header present on one side
//!   only is reported.
//! - **security** (significant): drift ignores `security` and `components.securitySchemes`;
//!   the top-level requirement, operation-level requirements and each scheme (other than its
//!   description) are compared.
//! - **documentation drift does not look at** (documentation-only): `info`, top-level `tags`,
//!   `servers` and `externalDocs`; each operation's `summary`, `description`, `tags`,
//!   `deprecated` and `externalDocs`; each parameter's `description`, `example`, `examples`
//!   and `deprecated`; each response's `description`; each security scheme's `description`.
//!   (drift itself reports schema descriptions, examples and request-body descriptions.)

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::{Map, Value};

use crate::{
    Error, Result, check_openapi_30,
    pointer::{METHODS, deref, escape, join},
};

/// How much a change matters to a program talking to the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeClass {
    /// The wire contract differs (or drift cannot tell that it does not).
    Significant,
    /// Only documentation differs: descriptions, summaries, examples, tags text and the like.
    DocumentationOnly,
}

impl fmt::Display for ChangeClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            ChangeClass::Significant => "significant",
            ChangeClass::DocumentationOnly => "documentation-only",
        })
    }
}

/// What a change means for the programs already using the API: the grouping of a changelog
/// and the input of the release gate. The expected document is the older one.
///
/// drift's classes map as follows: *backward-incompatible* and *incompatible* are breaking
/// (an existing client can fail); *forward-incompatible* is additive (only a new client
/// talking to an old server can fail: a new operation, a new optional parameter); *trivial*
/// is documentation. drift's *unhandled* is breaking, except for one case this crate
/// settles itself: object properties that were only added, none of them required, are
/// additive (drift 0.2 reports any change to the property set as unhandled). The checks on
/// top of drift give their own impact: something only in the newer document (a response
/// header, a media type, a security scheme) is additive; anything removed or changed is
/// breaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Impact {
    /// An existing client may stop working.
    Breaking,
    /// Something new; existing clients keep working.
    Additive,
    /// Only documentation changed.
    Documentation,
}

impl fmt::Display for Impact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Impact::Breaking => "breaking",
            Impact::Additive => "additive",
            Impact::Documentation => "documentation",
        })
    }
}

/// Which judge found a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Finder {
    /// drift, with its own classification.
    Drift(drift::ChangeClass),
    /// One of this crate's checks on top of drift (see the module documentation).
    Check,
}

impl fmt::Display for Finder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Finder::Drift(drift::ChangeClass::BackwardIncompatible) => {
                "drift: backward-incompatible"
            }
            Finder::Drift(drift::ChangeClass::ForwardIncompatible) => "drift: forward-incompatible",
            Finder::Drift(drift::ChangeClass::Incompatible) => "drift: incompatible",
            Finder::Drift(drift::ChangeClass::Trivial) => "drift: trivial",
            Finder::Drift(drift::ChangeClass::Unhandled) => "drift: unhandled",
            Finder::Check => "crm-spec check",
        })
    }
}

/// One difference between the expected and the actual document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpecChange {
    /// Whether the difference matters on the wire.
    pub class: ChangeClass,
    /// JSON pointer (`#/paths/~1unified~1crm~1contacts/get/...`) of the place in the expected
    /// document, or in the actual one when the place exists only there (an added operation).
    /// Parameters, responses and request bodies are addressed where the operation uses them.
    pub path: String,
    /// What changed, for a person.
    pub message: String,
    /// Who found it.
    pub finder: Finder,
    /// What it means for existing clients, the expected document taken as the older one.
    pub impact: Impact,
}

impl fmt::Display for SpecChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<18} {}: {} [{}]",
            self.class, self.path, self.message, self.finder
        )
    }
}

/// Every difference between two documents, significant ones first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    changes: Vec<SpecChange>,
}

impl Comparison {
    fn new(mut changes: Vec<SpecChange>) -> Self {
        changes.sort();
        changes.dedup();
        Self { changes }
    }

    /// All changes, significant first, then by path.
    pub fn changes(&self) -> &[SpecChange] {
        &self.changes
    }

    /// The significant changes.
    pub fn significant(&self) -> impl Iterator<Item = &SpecChange> {
        self.changes
            .iter()
            .filter(|c| c.class == ChangeClass::Significant)
    }

    /// True iff no change is significant (documentation may differ).
    pub fn is_compatible(&self) -> bool {
        self.significant().next().is_none()
    }

    /// True iff the documents do not differ at all, as far as the judges can see.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changes.is_empty() {
            return writeln!(f, "no changes");
        }
        for change in &self.changes {
            writeln!(f, "{change}")?;
        }
        let significant = self.significant().count();
        writeln!(
            f,
            "{} change(s): {} significant, {} documentation-only",
            self.changes.len(),
            significant,
            self.changes.len() - significant
        )
    }
}

/// Compares `actual` with `expected` (both OpenAPI 3.0). See the module documentation.
pub fn compare(expected: &Value, actual: &Value) -> Result<Comparison> {
    check_openapi_30(expected, "expected")?;
    check_openapi_30(actual, "actual")?;
    let mut expected = self_contained_operations(expected)?;
    let mut actual = self_contained_operations(actual)?;

    let mut changes = Vec::new();
    {
        let mut checks = Checks {
            exp: &expected,
            act: &actual,
            out: &mut changes,
        };
        checks.run()?;
    }
    guard_for_drift(&mut expected, &mut actual);

    let found = catch_unwind(AssertUnwindSafe(|| drift::compare(&expected, &actual)))
        .map_err(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Error::Drift(format!("drift panicked: {message}"))
        })?
        .map_err(|e| Error::Drift(format!("{e:#}")))?;

    for change in &found {
        for info in &change.changes {
            changes.push(from_drift(change, info, &expected, &actual));
        }
    }
    Ok(Comparison::new(changes))
}

/// Schema keywords drift counts as metadata.
const SCHEMA_METADATA: &[&str] = &[
    "readOnly",
    "writeOnly",
    "deprecated",
    "externalDocs",
    "example",
    "title",
    "description",
    "discriminator",
    "default",
];

/// Which metadata keywords differ between the schemas drift found a metadata change in,
/// e.g. `description changed from ... to ...`; `None` when they cannot be located.
fn metadata_detail(
    change: &drift::Change,
    info: &drift::ChangeInfo,
    exp: &Value,
    act: &Value,
) -> Option<String> {
    let (e, a) = located(change, info, exp, act)?;
    let mut keys: Vec<&str> = SCHEMA_METADATA
        .iter()
        .copied()
        .filter(|k| e.get(*k) != a.get(*k))
        .collect();
    let extension = |v: &Value| -> Vec<(String, Value)> {
        v.as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| k.starts_with("x-"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    if extension(&e) != extension(&a) {
        keys.push("extensions");
    }
    match keys.as_slice() {
        [] => None,
        [key] if *key != "extensions" => Some(format!(
            "{key} changed {}",
            difference(e.get(*key), a.get(*key))
        )),
        several => Some(format!("{} changed", several.join(", "))),
    }
}

/// The values a drift change points at in the expected and the actual document.
fn located(
    change: &drift::Change,
    info: &drift::ChangeInfo,
    exp: &Value,
    act: &Value,
) -> Option<(Value, Value)> {
    let first = change.paths.first()?;
    let locate = |doc: &'_ Value, stack: &drift::JsonPathStack, subpath: &str| {
        let base = stack.current_pointer().strip_prefix('#')?.to_owned();
        let pointer = if subpath.is_empty() {
            base
        } else {
            format!("{base}/{subpath}")
        };
        doc.pointer(&pointer).cloned()
    };
    Some((
        locate(exp, &first.old, &info.old_subpath)?,
        locate(act, &first.new, &info.new_subpath)?,
    ))
}

/// Whether drift's "object properties changed" is only new, optional properties: the
/// expected object's properties all remain, and none of the added ones is required.
fn only_optional_properties_added(
    change: &drift::Change,
    info: &drift::ChangeInfo,
    exp: &Value,
    act: &Value,
) -> bool {
    let Some((e, a)) = located(change, info, exp, act) else {
        return false;
    };
    let names = |v: &Value| -> BTreeSet<String> {
        v.get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    };
    let required = |v: &Value| -> BTreeSet<String> {
        v.get("required")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (before, after) = (names(&e), names(&a));
    before.is_subset(&after)
        && before != after
        && after
            .difference(&before)
            .all(|added| !required(&a).contains(added))
}

/// Which properties an "object properties changed" added and removed, e.g.
/// `added nickname; removed first_name`.
fn properties_detail(
    change: &drift::Change,
    info: &drift::ChangeInfo,
    exp: &Value,
    act: &Value,
) -> Option<String> {
    let (e, a) = located(change, info, exp, act)?;
    let names = |v: &Value| -> BTreeSet<String> {
        v.get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    };
    let (before, after) = (names(&e), names(&a));
    let list = |set: BTreeSet<&String>| {
        set.into_iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let added = list(after.difference(&before).collect());
    let removed = list(before.difference(&after).collect());
    let parts: Vec<String> = [("added", added), ("removed", removed)]
        .into_iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(what, names)| format!("{what} {names}"))
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn impact_of_drift(
    change: &drift::Change,
    info: &drift::ChangeInfo,
    exp: &Value,
    act: &Value,
) -> Impact {
    match info.class {
        drift::ChangeClass::Trivial => Impact::Documentation,
        drift::ChangeClass::ForwardIncompatible => Impact::Additive,
        drift::ChangeClass::BackwardIncompatible | drift::ChangeClass::Incompatible => {
            Impact::Breaking
        }
        drift::ChangeClass::Unhandled => {
            if info.message == "object properties changed"
                && only_optional_properties_added(change, info, exp, act)
            {
                Impact::Additive
            } else {
                Impact::Breaking
            }
        }
    }
}

fn from_drift(
    change: &drift::Change,
    info: &drift::ChangeInfo,
    exp: &Value,
    act: &Value,
) -> SpecChange {
    let class = match info.class {
        drift::ChangeClass::Trivial => ChangeClass::DocumentationOnly,
        drift::ChangeClass::BackwardIncompatible
        | drift::ChangeClass::ForwardIncompatible
        | drift::ChangeClass::Incompatible
        | drift::ChangeClass::Unhandled => ChangeClass::Significant,
    };
    let mut path = "#".to_owned();
    let mut message = info.message.clone();
    if info.details == drift::ChangeDetails::Metadata
        && let Some(detail) = metadata_detail(change, info, exp, act)
    {
        message = format!("{message}: {detail}");
    }
    if info.message == "object properties changed"
        && let Some(detail) = properties_detail(change, info, exp, act)
    {
        message = format!("{message}: {detail}");
    }
    if let Some(first) = change.paths.first() {
        // An added operation has no place in the expected document: use the actual one.
        let (stack, subpath) = if first.old.current_pointer() == "#/paths" {
            (&first.new, &info.new_subpath)
        } else {
            (&first.old, &info.old_subpath)
        };
        path = stack.current_pointer().to_owned();
        if !subpath.is_empty() {
            path = format!("{path}/{subpath}");
        }
        if stack.component_base().is_some()
            && let Some(endpoint) = stack.endpoint_base()
        {
            let more = change.paths.len() - 1;
            message = if more > 0 {
                format!("{message} (reached from {endpoint} and {more} more)")
            } else {
                format!("{message} (reached from {endpoint})")
            };
        }
    }
    SpecChange {
        class,
        path,
        message,
        finder: Finder::Drift(info.class),
        impact: impact_of_drift(change, info, exp, act),
    }
}

/// Makes every operation of a copy of `doc` self-contained: references to reusable
/// parameters, responses, request bodies and headers are inlined, and the path item's
/// parameters are pushed down into each operation (an operation's own parameter of the same
/// name and location wins, as OpenAPI specifies).
fn self_contained_operations(doc: &Value) -> Result<Value> {
    let mut out = doc.clone();
    let Some(paths) = out.get_mut("paths").and_then(Value::as_object_mut) else {
        return Ok(out);
    };
    for (path, item) in paths.iter_mut() {
        let item_at = join("#/paths", path);
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        let mut shared = match item.remove("parameters") {
            Some(Value::Array(list)) => list,
            _ => Vec::new(),
        };
        for param in &mut shared {
            inline_one(doc, param, &item_at)?;
        }
        for method in METHODS {
            let Some(op) = item.get_mut(method).and_then(Value::as_object_mut) else {
                continue;
            };
            let mut own = match op.remove("parameters") {
                Some(Value::Array(list)) => list,
                _ => Vec::new(),
            };
            for param in &mut own {
                inline_one(doc, param, &item_at)?;
            }
            let identity = |p: &Value| (p.get("in").cloned(), p.get("name").cloned());
            let mut merged: Vec<Value> = shared
                .iter()
                .filter(|s| !own.iter().any(|o| identity(o) == identity(s)))
                .cloned()
                .collect();
            merged.extend(own);
            if !merged.is_empty() {
                op.insert("parameters".into(), Value::Array(merged));
            }
            if let Some(body) = op.get_mut("requestBody") {
                inline_one(doc, body, &item_at)?;
            }
            if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                for response in responses.values_mut() {
                    inline_one(doc, response, &item_at)?;
                    if let Some(headers) =
                        response.get_mut("headers").and_then(Value::as_object_mut)
                    {
                        for header in headers.values_mut() {
                            inline_one(doc, header, &item_at)?;
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

fn inline_one(doc: &Value, value: &mut Value, at: &str) -> Result<()> {
    if value.get("$ref").is_some() {
        let (target, _) = deref(doc, value, at)?;
        *value = target.clone();
    }
    Ok(())
}

/// An operation found in a document, keyed like drift keys it.
struct Operation<'a> {
    /// Pointer to the operation, `#/paths/<path>/<method>`.
    at: String,
    /// The path template as written.
    path: &'a str,
    op: &'a Value,
}

/// drift's operation key: the route with every `{name}` made `{}`, and the method.
fn route_key(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

fn operations(doc: &Value) -> BTreeMap<(String, &'static str), Operation<'_>> {
    let mut out = BTreeMap::new();
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        return out;
    };
    for (path, item) in paths {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.insert(
                    (route_key(path), method),
                    Operation {
                        at: join(&join("#/paths", path), method),
                        path,
                        op,
                    },
                );
            }
        }
    }
    out
}

/// How a parameter is identified across documents: path parameters by position in the
/// route (their names do not reach the wire), the others by location and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum ParamKey {
    Path(usize),
    Named(String, String),
}

impl fmt::Display for ParamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamKey::Path(i) => write!(f, "path parameter #{i}"),
            ParamKey::Named(location, name) => write!(f, "{location} parameter '{name}'"),
        }
    }
}

fn path_param_names(path: &str) -> Vec<&str> {
    path.split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
        .collect()
}

/// An operation's parameters (inline, path item's pushed down by now), each with its
/// pointer.
fn effective_params<'a>(op: &Operation<'a>) -> BTreeMap<ParamKey, (String, &'a Value)> {
    let names = path_param_names(op.path);
    let mut out = BTreeMap::new();
    let Some(params) = op.op.get("parameters").and_then(Value::as_array) else {
        return out;
    };
    for (index, param) in params.iter().enumerate() {
        let location = param.get("in").and_then(Value::as_str).unwrap_or_default();
        let name = param
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let key = match names.iter().position(|n| *n == name) {
            Some(position) if location == "path" => ParamKey::Path(position),
            // Not a path parameter, or one declared but absent from the route.
            _ => ParamKey::Named(location.to_owned(), name.to_owned()),
        };
        let at = join(&join(&op.at, "parameters"), &index.to_string());
        out.insert(key, (at, param));
    }
    out
}

/// The checks drift does not make (see the module documentation).
struct Checks<'a, 'o> {
    exp: &'a Value,
    act: &'a Value,
    out: &'o mut Vec<SpecChange>,
}

impl Checks<'_, '_> {
    fn push(&mut self, class: ChangeClass, path: String, message: String) {
        let impact = match class {
            ChangeClass::Significant => Impact::Breaking,
            ChangeClass::DocumentationOnly => Impact::Documentation,
        };
        self.out.push(SpecChange {
            class,
            path,
            message,
            finder: Finder::Check,
            impact,
        });
    }

    /// Records something significant that only the actual (newer) document has.
    fn push_addition(&mut self, path: String, message: String) {
        self.out.push(SpecChange {
            class: ChangeClass::Significant,
            path,
            message,
            finder: Finder::Check,
            impact: Impact::Additive,
        });
    }

    /// Reports a documentation-only difference of `key` between two objects.
    fn doc_key(&mut self, exp: &Value, act: &Value, at: &str, key: &str) {
        let (e, a) = (exp.get(key), act.get(key));
        if e != a {
            self.push(
                ChangeClass::DocumentationOnly,
                join(at, key),
                format!("{key} changed {}", difference(e, a)),
            );
        }
    }

    fn run(&mut self) -> Result<()> {
        let (exp, act) = (self.exp, self.act);
        for key in ["info", "tags", "servers", "externalDocs"] {
            self.doc_key(exp, act, "#", key);
        }
        self.security_schemes();
        if exp.get("security") != act.get("security")
            && !same_requirements(exp.get("security"), act.get("security"))
        {
            self.push(
                ChangeClass::Significant,
                "#/security".into(),
                format!(
                    "security changed from {} to {}",
                    show(exp.get("security")),
                    show(act.get("security"))
                ),
            );
        }

        let exp_ops = operations(exp);
        let act_ops = operations(act);
        for (key, e) in &exp_ops {
            let Some(a) = act_ops.get(key) else {
                continue; // drift reports removed operations.
            };
            self.operation(e, a)?;
        }
        Ok(())
    }

    fn operation(&mut self, e: &Operation<'_>, a: &Operation<'_>) -> Result<()> {
        let at = e.at.as_str();
        let (eo, ao) = (e.op, a.op);
        if eo.get("operationId") != ao.get("operationId") {
            self.push(
                ChangeClass::Significant,
                join(at, "operationId"),
                format!(
                    "operationId changed from {} to {}",
                    show(eo.get("operationId")),
                    show(ao.get("operationId"))
                ),
            );
        }
        for key in [
            "summary",
            "description",
            "tags",
            "deprecated",
            "externalDocs",
        ] {
            self.doc_key(eo, ao, at, key);
        }
        if (eo.get("security").is_some() || ao.get("security").is_some())
            && !same_requirements(
                eo.get("security").or_else(|| self.exp.get("security")),
                ao.get("security").or_else(|| self.act.get("security")),
            )
        {
            self.push(
                ChangeClass::Significant,
                join(at, "security"),
                "the operation's security requirements changed".into(),
            );
        }

        let exp_params = effective_params(e);
        let act_params = effective_params(a);
        for (key, (param_at, ep)) in &exp_params {
            if let Some((act_at, ap)) = act_params.get(key) {
                self.parameter(key, param_at, ep, ap, act_at)?;
            } else if matches!(key, ParamKey::Path(_)) {
                self.push(
                    ChangeClass::Significant,
                    param_at.clone(),
                    format!("{key} is not declared in the actual document"),
                );
            }
        }
        for (key, (act_at, _)) in &act_params {
            if matches!(key, ParamKey::Path(_)) && !exp_params.contains_key(key) {
                self.push(
                    ChangeClass::Significant,
                    at.to_owned(),
                    format!("{key} is declared only in the actual document (at {act_at})"),
                );
            }
        }

        if let (Some(eb), Some(ab)) = (eo.get("requestBody"), ao.get("requestBody")) {
            let body_at = join(at, "requestBody");
            self.content(eb, ab, &body_at, &join(&a.at, "requestBody"))?;
        }
        let responses = (eo.get("responses"), ao.get("responses"));
        if let (Some(Value::Object(er)), Some(Value::Object(ar))) = responses {
            for (status, e_resp) in er {
                let Some(a_resp) = ar.get(status) else {
                    continue; // drift reports removed responses.
                };
                let resp_at = join(&join(at, "responses"), status);
                self.doc_key(e_resp, a_resp, &resp_at, "description");
                self.headers(e_resp, a_resp, &resp_at)?;
                let a_at = join(&join(&a.at, "responses"), status);
                self.content(e_resp, a_resp, &resp_at, &a_at)?;
            }
        }
        Ok(())
    }

    fn parameter(
        &mut self,
        key: &ParamKey,
        at: &str,
        e: &Value,
        a: &Value,
        act_at: &str,
    ) -> Result<()> {
        for field in ["description", "example", "examples", "deprecated"] {
            self.doc_key(e, a, at, field);
        }
        for ((field, ev), (_, av)) in serialisation(e).into_iter().zip(serialisation(a)) {
            if ev != av {
                self.push(
                    ChangeClass::Significant,
                    join(at, field),
                    format!("{key}: {field} changed from {ev} to {av}"),
                );
            }
        }
        if let (Some(e_schema), Some(a_schema)) = (e.get("schema"), a.get("schema")) {
            let mut seen = HashSet::new();
            self.nullable(
                e_schema,
                join(at, "schema"),
                a_schema,
                join(act_at, "schema"),
                &mut seen,
            )?;
        }
        Ok(())
    }

    fn headers(&mut self, e: &Value, a: &Value, at: &str) -> Result<()> {
        let names = |v: &Value| -> BTreeSet<String> {
            v.get("headers")
                .and_then(Value::as_object)
                .map(|h| h.keys().map(|k| k.to_ascii_lowercase()).collect())
                .unwrap_or_default()
        };
        let (en, an) = (names(e), names(a));
        for name in en.difference(&an) {
            self.push(
                ChangeClass::Significant,
                join(&join(at, "headers"), name),
                format!("response header '{name}' is not in the actual document"),
            );
        }
        for name in an.difference(&en) {
            self.push_addition(
                join(at, "headers"),
                format!("response header '{name}' is only in the actual document"),
            );
        }
        Ok(())
    }

    /// Media types on one side only, and nullability inside the shared ones.
    fn content(&mut self, e: &Value, a: &Value, at: &str, act_at: &str) -> Result<()> {
        let empty = Map::new();
        let ec = e
            .get("content")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let ac = a
            .get("content")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let content_at = join(at, "content");
        for (media, e_media) in ec {
            let media_at = join(&content_at, media);
            let Some(a_media) = ac.get(media) else {
                self.push(
                    ChangeClass::Significant,
                    media_at,
                    format!("media type {media} is not in the actual document"),
                );
                continue;
            };
            match (e_media.get("schema"), a_media.get("schema")) {
                (Some(es), Some(a_schema)) => {
                    let mut seen = HashSet::new();
                    let a_at = join(&join(&join(act_at, "content"), media), "schema");
                    self.nullable(es, join(&media_at, "schema"), a_schema, a_at, &mut seen)?;
                }
                (None, None) => {}
                (Some(_), None) => self.push(
                    ChangeClass::Significant,
                    join(&media_at, "schema"),
                    format!("{media} has a schema here but none in the actual document"),
                ),
                (None, Some(_)) => self.push(
                    ChangeClass::Significant,
                    media_at,
                    format!("{media} has no schema here but one in the actual document"),
                ),
            }
        }
        for media in ac.keys().filter(|m| !ec.contains_key(*m)) {
            self.push_addition(
                content_at.clone(),
                format!("media type {media} is only in the actual document"),
            );
        }
        Ok(())
    }

    /// Walks two schemas in parallel and reports every place their nullability differs.
    fn nullable(
        &mut self,
        e: &Value,
        e_at: String,
        a: &Value,
        a_at: String,
        seen: &mut HashSet<(String, String)>,
    ) -> Result<()> {
        let (e_null, e, e_inner_at) = effective(self.exp, e, &e_at)?;
        let (a_null, a, a_inner_at) = effective(self.act, a, &a_at)?;
        if e_null != a_null {
            let word = |n: bool| if n { "nullable" } else { "not nullable" };
            self.push(
                ChangeClass::Significant,
                e_at,
                format!(
                    "was {} and is {} in the actual document (at {a_at})",
                    word(e_null),
                    word(a_null)
                ),
            );
        }
        if !seen.insert((e_inner_at.clone(), a_inner_at.clone())) {
            return Ok(());
        }
        if let (Some(Value::Object(ep)), Some(Value::Object(ap))) =
            (e.get("properties"), a.get("properties"))
        {
            let e_props = join(&e_inner_at, "properties");
            let a_props = join(&a_inner_at, "properties");
            for (name, e_prop) in ep {
                if let Some(a_prop) = ap.get(name) {
                    self.nullable(
                        e_prop,
                        join(&e_props, name),
                        a_prop,
                        join(&a_props, name),
                        seen,
                    )?;
                }
            }
        }
        for key in ["items", "additionalProperties", "not"] {
            if let (Some(es @ Value::Object(_)), Some(a_sub @ Value::Object(_))) =
                (e.get(key), a.get(key))
            {
                self.nullable(
                    es,
                    join(&e_inner_at, key),
                    a_sub,
                    join(&a_inner_at, key),
                    seen,
                )?;
            }
        }
        for key in ["allOf", "oneOf", "anyOf"] {
            if let (Some(Value::Array(eb)), Some(Value::Array(ab))) = (e.get(key), a.get(key))
                && eb.len() == ab.len()
            {
                for (index, (es, a_sub)) in eb.iter().zip(ab).enumerate() {
                    let i = index.to_string();
                    self.nullable(
                        es,
                        join(&join(&e_inner_at, key), &i),
                        a_sub,
                        join(&join(&a_inner_at, key), &i),
                        seen,
                    )?;
                }
            }
        }
        Ok(())
    }

    fn security_schemes(&mut self) {
        let schemes = |doc: &Value| -> Map<String, Value> {
            doc.pointer("/components/securitySchemes")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let (es, as_) = (schemes(self.exp), schemes(self.act));
        let base = "#/components/securitySchemes";
        for (name, e) in &es {
            let at = join(base, name);
            let Some(a) = as_.get(name) else {
                self.push(
                    ChangeClass::Significant,
                    at,
                    format!("security scheme '{name}' is not in the actual document"),
                );
                continue;
            };
            self.doc_key(e, a, &at, "description");
            let strip = |v: &Value| {
                let mut v = v.clone();
                if let Some(o) = v.as_object_mut() {
                    o.remove("description");
                }
                v
            };
            if strip(e) != strip(a) {
                self.push(
                    ChangeClass::Significant,
                    at,
                    format!(
                        "security scheme '{name}' changed from {} to {}",
                        strip(e),
                        strip(a)
                    ),
                );
            }
        }
        for name in as_.keys().filter(|n| !es.contains_key(*n)) {
            self.push_addition(
                base.into(),
                format!("security scheme '{name}' is only in the actual document"),
            );
        }
    }
}

/// A parameter's effective `style`, `explode`, `allowReserved` and `allowEmptyValue`, with
/// OpenAPI's defaults: `form` for query and cookie parameters, `simple` for path and header
/// ones; `explode` true exactly for `form`; the flags false.
fn serialisation(param: &Value) -> [(&'static str, String); 4] {
    let location = param.get("in").and_then(Value::as_str).unwrap_or_default();
    let default_style = match location {
        "query" | "cookie" => "form",
        _ => "simple",
    };
    let style = param
        .get("style")
        .and_then(Value::as_str)
        .unwrap_or(default_style);
    let explode = param
        .get("explode")
        .and_then(Value::as_bool)
        .unwrap_or(style == "form");
    let flag = |k: &str| param.get(k).and_then(Value::as_bool).unwrap_or(false);
    [
        ("style", style.to_owned()),
        ("explode", explode.to_string()),
        ("allowReserved", flag("allowReserved").to_string()),
        ("allowEmptyValue", flag("allowEmptyValue").to_string()),
    ]
}

/// Security requirement lists compared as sets.
fn same_requirements(e: Option<&Value>, a: Option<&Value>) -> bool {
    let set = |v: Option<&Value>| -> BTreeSet<String> {
        v.and_then(Value::as_array)
            .map(|reqs| reqs.iter().map(Value::to_string).collect())
            .unwrap_or_default()
    };
    set(e) == set(a)
}

/// Follows `$ref`s and single-element `allOf`/`oneOf`/`anyOf` wrappers down to the schema
/// that says something, returning whether any step on the way was `nullable`, that schema,
/// and its pointer.
fn effective<'a>(doc: &'a Value, schema: &'a Value, at: &str) -> Result<(bool, &'a Value, String)> {
    let mut nullable = false;
    let mut current = schema;
    let mut at = at.to_owned();
    for _ in 0..64 {
        let (resolved, resolved_at) = deref(doc, current, &at)?;
        current = resolved;
        at = resolved_at;
        nullable |= current.get("nullable").and_then(Value::as_bool) == Some(true);
        let single = ["allOf", "oneOf", "anyOf"].into_iter().find_map(|key| {
            match current
                .get(key)
                .and_then(Value::as_array)
                .map(Vec::as_slice)
            {
                Some([only]) => Some((key, only)),
                _ => None,
            }
        });
        match single {
            Some((key, only)) => {
                at = join(&join(&at, key), "0");
                current = only;
            }
            None => return Ok((nullable, current, at)),
        }
    }
    Err(Error::UnresolvedRef {
        reference: format!("{at} (wrapper cycle)"),
    })
}

/// "from X to Y", for two strings only around the first place they differ.
fn difference(e: Option<&Value>, a: Option<&Value>) -> String {
    let (Some(Value::String(e)), Some(Value::String(a))) = (e, a) else {
        return format!("from {} to {}", show(e), show(a));
    };
    let same = e.chars().zip(a.chars()).take_while(|(x, y)| x == y).count();
    let start = same.saturating_sub(24);
    let excerpt = |text: &str| {
        let total = text.chars().count();
        let window: String = text.chars().skip(start).take(48).collect();
        format!(
            "{}{}{}",
            if start > 0 { "..." } else { "" },
            Value::String(window),
            if start + 48 < total { "..." } else { "" }
        )
    };
    format!("from {} to {}", excerpt(e), excerpt(a))
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "(absent)".to_owned(),
        Some(v) => {
            let text = v.to_string();
            if text.chars().count() > 80 {
                let cut: String = text.chars().take(77).collect();
                format!("{cut}...")
            } else {
                text
            }
        }
    }
}

/// Removes from both documents what would make drift panic, after [`Checks`] reported it:
/// media types on one side only, schemas on one side only, and path parameters declared on
/// one side only.
fn guard_for_drift(exp: &mut Value, act: &mut Value) {
    let pairs: Vec<(String, String, String, String)> = {
        let e_ops = operations(exp);
        let a_ops = operations(act);
        e_ops
            .iter()
            .filter_map(|(key, e)| {
                a_ops.get(key).map(|a| {
                    (
                        e.at[1..].to_owned(),
                        e.path.to_owned(),
                        a.at[1..].to_owned(),
                        a.path.to_owned(),
                    )
                })
            })
            .collect()
    };
    for (e_ptr, e_path, a_ptr, a_path) in pairs {
        guard_path_params(exp, &e_ptr, &e_path, act, &a_ptr, &a_path);
        let e_op = exp.pointer(&e_ptr).cloned().unwrap_or(Value::Null);
        let a_op = act.pointer(&a_ptr).cloned().unwrap_or(Value::Null);
        let mut targets: Vec<String> = Vec::new();
        if e_op.get("requestBody").is_some() && a_op.get("requestBody").is_some() {
            targets.push("/requestBody".into());
        }
        if let (Some(Value::Object(er)), Some(Value::Object(ar))) =
            (e_op.get("responses"), a_op.get("responses"))
        {
            for status in er.keys().filter(|s| ar.contains_key(*s)) {
                targets.push(format!("/responses/{}", escape(status)));
            }
        }
        for target in targets {
            prune_content(
                exp,
                &format!("{e_ptr}{target}"),
                act,
                &format!("{a_ptr}{target}"),
            );
        }
    }
}

/// Keeps only the media types both sides have, and drops a schema only one side has.
fn prune_content(exp: &mut Value, e_ptr: &str, act: &mut Value, a_ptr: &str) {
    let keys = |doc: &Value, ptr: &str| -> BTreeSet<String> {
        doc.pointer(&format!("{ptr}/content"))
            .and_then(Value::as_object)
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default()
    };
    let common: BTreeSet<String> = keys(exp, e_ptr)
        .intersection(&keys(act, a_ptr))
        .cloned()
        .collect();
    let has_schema = |doc: &Value, ptr: &str, media: &str| {
        doc.pointer(&format!("{ptr}/content/{}/schema", escape(media)))
            .is_some()
    };
    let schema_on_both: BTreeSet<String> = common
        .iter()
        .filter(|m| has_schema(exp, e_ptr, m) && has_schema(act, a_ptr, m))
        .cloned()
        .collect();
    for (doc, ptr) in [(exp, e_ptr), (act, a_ptr)] {
        let Some(content) = doc
            .pointer_mut(&format!("{ptr}/content"))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        content.retain(|media, _| common.contains(media));
        for (media, body) in content.iter_mut() {
            if !schema_on_both.contains(media)
                && let Some(body) = body.as_object_mut()
            {
                body.remove("schema");
            }
        }
    }
}

/// The positions (in the route) of the path parameters an operation declares.
fn declared_path_params(op: &Value, path: &str) -> BTreeSet<usize> {
    let names = path_param_names(path);
    op.get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.get("in").and_then(Value::as_str) == Some("path"))
        .filter_map(|p| {
            let name = p.get("name").and_then(Value::as_str)?;
            names.iter().position(|n| *n == name)
        })
        .collect()
}

/// Drops the path parameters one side declares and the other does not.
fn guard_path_params(
    exp: &mut Value,
    e_ptr: &str,
    e_path: &str,
    act: &mut Value,
    a_ptr: &str,
    a_path: &str,
) {
    let declared = |doc: &Value, ptr: &str, path: &str| {
        doc.pointer(ptr)
            .map(|op| declared_path_params(op, path))
            .unwrap_or_default()
    };
    let e = declared(exp, e_ptr, e_path);
    let a = declared(act, a_ptr, a_path);
    if e == a {
        return;
    }
    let keep: BTreeSet<usize> = e.intersection(&a).copied().collect();
    for (doc, ptr, path) in [(exp, e_ptr, e_path), (act, a_ptr, a_path)] {
        let names = path_param_names(path);
        let Some(list) = doc
            .pointer_mut(&format!("{ptr}/parameters"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        list.retain(|p| {
            let name = p.get("name").and_then(Value::as_str);
            p.get("in").and_then(Value::as_str) != Some("path")
                || names
                    .iter()
                    .position(|n| Some(*n) == name)
                    .is_none_or(|pos| keep.contains(&pos))
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::test_support::crm_yaml;

    /// Compares crm.yaml with a copy edited by `edit`.
    fn against_edited(edit: impl FnOnce(&mut Value)) -> Comparison {
        let expected = crm_yaml();
        let mut actual = expected.clone();
        edit(&mut actual);
        compare(&expected, &actual).expect("comparison runs")
    }

    fn at<'v>(doc: &'v mut Value, pointer: &str) -> &'v mut Value {
        doc.pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{pointer} exists in crm.yaml"))
    }

    /// Asserts the comparison is incompatible with a significant change at a path containing
    /// `fragment` whose message contains `words`.
    fn assert_significant(comparison: &Comparison, fragment: &str, words: &str) {
        assert!(!comparison.is_compatible(), "{comparison}");
        assert!(
            comparison
                .significant()
                .any(|c| c.path.contains(fragment) && c.message.contains(words)),
            "no significant change at {fragment} saying {words:?}:\n{comparison}"
        );
    }

    const CONTACTS: &str = "/paths/~1unified~1crm~1contacts";
    const CONTACT: &str = "/components/schemas/Contact";

    #[test]
    fn crm_yaml_against_itself_has_no_changes() {
        let doc = crm_yaml();
        let comparison = compare(&doc, &doc).unwrap();
        assert!(comparison.is_empty(), "{comparison}");
        assert!(comparison.is_compatible());
        assert_eq!(comparison.to_string(), "no changes\n");
    }

    #[test]
    fn removed_operation_is_significant() {
        let c = against_edited(|doc| {
            at(doc, CONTACTS).as_object_mut().unwrap().remove("post");
        });
        assert_significant(
            &c,
            "~1unified~1crm~1contacts/post",
            "crm_create_contact was removed",
        );
        assert!(
            c.significant()
                .all(|ch| ch.finder == Finder::Drift(drift::ChangeClass::BackwardIncompatible))
        );
    }

    #[test]
    fn added_operation_is_significant() {
        let c = against_edited(|doc| {
            let get = at(doc, &format!("{CONTACTS}/get")).clone();
            at(doc, "/paths")
                .as_object_mut()
                .unwrap()
                .insert("/unified/crm/extra".into(), json!({"get": get}));
        });
        assert_significant(&c, "~1unified~1crm~1extra/get", "was added");
    }

    #[test]
    fn dropped_response_field_is_significant() {
        let c = against_edited(|doc| {
            at(doc, &format!("{CONTACT}/properties"))
                .as_object_mut()
                .unwrap()
                .remove("emails");
        });
        assert_significant(&c, CONTACT.trim_start_matches('/'), "properties changed");
    }

    #[test]
    fn changed_property_type_is_significant() {
        let c = against_edited(|doc| {
            *at(doc, &format!("{CONTACT}/properties/first_name/type")) = json!("integer");
        });
        assert_significant(&c, "Contact/properties/first_name", "types changed");
    }

    #[test]
    fn parameter_made_required_is_significant() {
        let c = against_edited(|doc| {
            *at(doc, "/components/parameters/Raw/required") = json!(true);
        });
        assert_significant(
            &c,
            "~1unified~1crm~1contacts/get/parameters",
            "'raw' was optional",
        );
    }

    #[test]
    fn removed_response_code_is_significant() {
        let c = against_edited(|doc| {
            at(doc, &format!("{CONTACTS}/get/responses"))
                .as_object_mut()
                .unwrap()
                .remove("404");
        });
        assert_significant(
            &c,
            "~1unified~1crm~1contacts/get",
            "no longer responds with status 404",
        );
    }

    #[test]
    fn changed_schema_description_is_documentation_only() {
        let c = against_edited(|doc| {
            *at(doc, &format!("{CONTACT}/properties/first_name/description")) =
                json!("The given name");
        });
        assert!(c.is_compatible(), "{c}");
        assert!(!c.is_empty());
        assert!(
            c.changes()
                .iter()
                .all(|ch| ch.class == ChangeClass::DocumentationOnly),
            "{c}"
        );
        assert!(
            c.changes()[0]
                .path
                .contains("Contact/properties/first_name"),
            "{c}"
        );
    }

    #[test]
    fn operation_and_response_documentation_is_documentation_only() {
        let c = against_edited(|doc| {
            *at(doc, &format!("{CONTACTS}/get/description")) = json!("Other words.");
            *at(doc, &format!("{CONTACTS}/get/summary")) = json!("Contacts");
            *at(doc, &format!("{CONTACTS}/get/responses/200/description")) = json!("Page.");
            *at(doc, "/components/parameters/Fields/description") = json!("Fields.");
            *at(doc, "/components/responses/NotFound/description") = json!("Gone.");
            *at(doc, "/info/description") = json!("Short.");
            *at(doc, "/tags/0/description") = json!("People.");
        });
        assert!(c.is_compatible(), "{c}");
        let paths: Vec<&str> = c.changes().iter().map(|ch| ch.path.as_str()).collect();
        for expected in [
            "#/paths/~1unified~1crm~1contacts/get/description",
            "#/paths/~1unified~1crm~1contacts/get/summary",
            "#/paths/~1unified~1crm~1contacts/get/responses/200/description",
            "#/paths/~1unified~1crm~1contacts/get/responses/404/description",
            "#/info",
            "#/tags",
        ] {
            assert!(paths.contains(&expected), "{expected} missing from\n{c}");
        }
        assert!(
            paths
                .iter()
                .any(|p| p.ends_with("/description") && p.contains("parameters")),
            "{c}"
        );
    }

    #[test]
    fn nullable_removed_is_significant() {
        let c = against_edited(|doc| {
            at(doc, &format!("{CONTACT}/properties/last_name"))
                .as_object_mut()
                .unwrap()
                .remove("nullable");
        });
        assert_significant(
            &c,
            "Contact/properties/last_name",
            "was nullable and is not nullable",
        );
    }

    #[test]
    fn nullable_on_a_reference_wrapper_counts() {
        let c = against_edited(|doc| {
            *at(doc, "/components/schemas/AccountAddress/properties/country") =
                json!({"$ref": "#/components/schemas/CountryCodeEnum"});
        });
        assert_significant(&c, "AccountAddress/properties/country", "not nullable");
    }

    #[test]
    fn parameters_inline_or_referenced_compare_equal() {
        let expected = crm_yaml();
        let inlined = self_contained_operations(&expected).unwrap();
        let c = compare(&expected, &inlined).unwrap();
        assert!(c.is_empty(), "{c}");
        let c = compare(&inlined, &expected).unwrap();
        assert!(c.is_empty(), "{c}");
    }

    #[test]
    fn path_item_parameters_equal_operation_parameters() {
        let expected = crm_yaml();
        let mut actual = expected.clone();
        let item = at(&mut actual, "/paths/~1unified~1crm~1contacts~1{id}");
        let shared = json!([{"$ref": "#/components/parameters/AccountId"}]);
        for method in ["get", "patch", "delete"] {
            let params = item[method]["parameters"].as_array_mut().unwrap();
            params.retain(|p| p != &shared[0]);
        }
        item["parameters"] = shared;
        let c = compare(&expected, &actual).unwrap();
        assert!(c.is_empty(), "{c}");
    }

    #[test]
    fn renamed_path_parameter_is_no_change() {
        let c = against_edited(|doc| {
            let paths = at(doc, "/paths").as_object_mut().unwrap();
            let mut item = paths
                .remove("/unified/crm/lists/{id}/items/{item_id}")
                .unwrap();
            item["delete"]["parameters"][2]["name"] = json!("record_id");
            paths.insert("/unified/crm/lists/{id}/items/{record_id}".into(), item);
        });
        assert!(c.is_empty(), "{c}");
    }

    #[test]
    fn undeclared_path_parameter_is_significant_not_a_panic() {
        let c = against_edited(|doc| {
            let params = at(doc, &format!("{CONTACTS}~1{{id}}/get/parameters"));
            params
                .as_array_mut()
                .unwrap()
                .retain(|p| p != &json!({"$ref": "#/components/parameters/Id"}));
        });
        assert_significant(
            &c,
            "~1unified~1crm~1contacts~1{id}/get",
            "path parameter #0",
        );
    }

    #[test]
    fn changed_media_type_is_significant_not_a_panic() {
        let c = against_edited(|doc| {
            let content = at(doc, &format!("{CONTACTS}/get/responses/200/content"));
            let media = content["application/json"].clone();
            *content = json!({"text/plain": media});
        });
        assert_significant(
            &c,
            "responses/200/content/application~1json",
            "not in the actual",
        );
        assert_significant(
            &c,
            "responses/200/content",
            "text/plain is only in the actual",
        );
    }

    #[test]
    fn schema_on_one_side_only_is_significant_not_a_panic() {
        let c = against_edited(|doc| {
            at(
                doc,
                &format!("{CONTACTS}/get/responses/200/content/application~1json"),
            )
            .as_object_mut()
            .unwrap()
            .remove("schema");
        });
        assert_significant(
            &c,
            "responses/200/content/application~1json",
            "none in the actual",
        );
    }

    #[test]
    fn parameter_style_change_is_significant() {
        let c = against_edited(|doc| {
            let filter = at(doc, "/components/parameters/Filter")
                .as_object_mut()
                .unwrap();
            filter.remove("style");
            filter.remove("explode");
        });
        assert_significant(&c, "parameters", "style changed from deepObject to form");
    }

    #[test]
    fn changed_operation_id_is_significant() {
        let c = against_edited(|doc| {
            *at(doc, &format!("{CONTACTS}/get/operationId")) = json!("listContacts");
        });
        assert_significant(
            &c,
            "~1unified~1crm~1contacts/get/operationId",
            "listContacts",
        );
    }

    #[test]
    fn removed_enum_value_is_significant() {
        let c = against_edited(|doc| {
            at(
                doc,
                "/components/schemas/LocationTypeEnum/properties/value/enum",
            )
            .as_array_mut()
            .unwrap()
            .pop();
        });
        assert_significant(
            &c,
            "LocationTypeEnum/properties/value",
            "string schema changed",
        );
    }

    #[test]
    fn new_required_property_is_significant() {
        let c = against_edited(|doc| {
            at(doc, "/components/schemas/CrmCreateContactRequestDto")["required"] =
                json!(["last_name"]);
        });
        assert_significant(
            &c,
            "CrmCreateContactRequestDto",
            "required properties changed",
        );
    }

    #[test]
    fn response_header_and_security_changes_are_significant() {
        let c = against_edited(|doc| {
            at(doc, &format!("{CONTACTS}/get/responses/200"))["headers"] =
                json!({"ETag": {"schema": {"type": "string"}}});
            at(doc, "/components/securitySchemes")
                .as_object_mut()
                .unwrap()
                .remove("bearer");
            *at(doc, "/security") = json!([{"basic": []}]);
        });
        assert_significant(&c, "responses/200/headers", "'etag' is only in the actual");
        assert_significant(
            &c,
            "#/components/securitySchemes/bearer",
            "not in the actual",
        );
        assert_significant(&c, "#/security", "security changed");
    }

    #[test]
    fn a_mixed_comparison_lists_every_change() {
        let c = against_edited(|doc| {
            at(doc, &format!("{CONTACTS}/get/responses"))
                .as_object_mut()
                .unwrap()
                .remove("404");
            *at(doc, "/components/parameters/Raw/required") = json!(true);
            *at(doc, &format!("{CONTACT}/properties/first_name/description")) = json!("x");
            *at(doc, &format!("{CONTACT}/properties/first_name/type")) = json!("integer");
            at(doc, &format!("{CONTACT}/properties/last_name"))
                .as_object_mut()
                .unwrap()
                .remove("nullable");
            *at(doc, &format!("{CONTACTS}/get/summary")) = json!("Contacts");
        });
        println!("{c}");
        let text = c.to_string();
        // A removed response, a newly required parameter, a changed type and a dropped
        // `nullable` are significant; a description and a summary are documentation.
        assert!(c.significant().count() >= 4, "{text}");
        assert!(!c.is_compatible());
        assert!(text.contains("documentation-only"), "{text}");
        assert!(
            text.find("significant") < text.find("documentation-only"),
            "{text}"
        );
    }

    #[test]
    fn display_lists_significant_changes_first() {
        let c = against_edited(|doc| {
            *at(doc, &format!("{CONTACT}/properties/first_name/description")) = json!("x");
            *at(doc, &format!("{CONTACT}/properties/first_name/type")) = json!("integer");
        });
        let text = c.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("significant"), "{text}");
        let first_doc = lines
            .iter()
            .position(|l| l.starts_with("documentation-only"))
            .expect("a documentation-only line");
        assert!(
            lines[..first_doc]
                .iter()
                .all(|l| l.starts_with("significant")),
            "{text}"
        );
        assert!(
            lines[0].contains("#/components/schemas/Contact/properties/first_name"),
            "{text}"
        );
        assert!(text.ends_with("documentation-only\n"), "{text}");
    }

    #[test]
    fn rejects_31_documents() {
        let doc = crm_yaml();
        let mut v31 = doc.clone();
        *at(&mut v31, "/components/schemas/Contact/properties/id/type") = json!(["string", "null"]);
        assert!(matches!(
            compare(&doc, &v31),
            Err(Error::NotOpenApi30 {
                which: "actual",
                ..
            })
        ));
    }
}
