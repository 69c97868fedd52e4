//! Fuzzes the parameter parsing of the PopIM family (query strings, forms with `name[]=` arrays, JSON
//! bodies) and the typed reads every handler makes of them.
//!
//! Beyond "never panics": a value read as an id is positive, a list of ids holds no repeats and stays
//! within its bound, a text is within its length, and a number within its range, or the read is an
//! error (the family's code 1), never a wrong value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rookery::http::popim::{Params, PARAM};

fuzz_target!(|data: &[u8]| {
    let Some((&how, body)) = data.split_first() else { return };
    let mut p = Params::default();
    let parsed = if how % 2 == 0 { Params::from_form(body, &mut p) } else { Params::from_json(body, &mut p) };
    if let Err(e) = parsed {
        assert_eq!(e.code, PARAM);
        return;
    }
    for name in ["login_uid", "uid", "gid", "members", "content", "type", "mid", "limit", "ty", "time"] {
        if let Ok(Some(id)) = p.opt_id(name) {
            assert!(id > 0);
        }
        if let Ok(ids) = p.ids(name) {
            assert!(!ids.is_empty() && ids.len() <= 1000 && ids.iter().all(|i| *i > 0));
            let mut sorted = ids.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), ids.len(), "no repeats");
        }
        if let Ok(Some(t)) = p.text(name, false, 255) {
            assert!(t.chars().count() <= 255);
        }
        if let Ok(Some(n)) = p.int(name, false, -5..=5) {
            assert!((-5..=5).contains(&n));
        }
        if let Err(e) = p.kind() {
            assert_eq!(e.code, PARAM);
        }
    }
});
