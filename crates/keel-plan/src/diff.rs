//! A readable difference of two JSON values: one line per changed path.

use serde_json::Value;

/// `path: old -> new` for every leaf that differs (`+ path: new`, `- path: old` for added and
/// removed keys); arrays of different lengths are shown whole.
pub fn json(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    out
}

fn walk(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    if old == new {
        return;
    }
    let at = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => walk(&at(k), v, w, out),
                    None => out.push(format!("- {}: {v}", at(k))),
                }
            }
            for (k, w) in b {
                if !a.contains_key(k) {
                    out.push(format!("+ {}: {w}", at(k)));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                walk(&format!("{path}[{i}]"), v, w, out);
            }
        }
        _ => out.push(format!("{}: {old} -> {new}", if path.is_empty() { "." } else { path })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changed_added_and_removed_paths_are_listed() {
        let old = json!({"policy": {"type": "thompson_beta"}, "seed": 1, "variants": [{"name": "a"}, {"name": "b"}]});
        let new = json!({"policy": {"type": "lin_ucb", "alpha": 0.5}, "variants": [{"name": "a"}, {"name": "c"}]});
        assert_eq!(
            json(&old, &new),
            vec![
                "policy.type: \"thompson_beta\" -> \"lin_ucb\"",
                "+ policy.alpha: 0.5",
                "- seed: 1",
                "variants[1].name: \"b\" -> \"c\"",
            ]
        );
        assert!(json(&old, &old).is_empty());
    }
}
