//! The plan parser's errors, as a table: each broken plan next to the full
//! report `sluice plan check` would print (`line:column: field: message`),
//! plus the plans that must parse, with their defaults.
//!
//! Update the expectations with `UPDATE_EXPECT=1 cargo test --test plan_errors`
//! and review the diff.

use expect_test::{expect, Expect};
use sluice_core::duration::Duration;
use sluice_core::percent::{Amount, Percent};
use sluice_core::plan::{
    parse_plan, Aggregate, Comparison, Direction, Judge, NoData, OnFailure, Plan,
};

/// Strips the indentation common to every line, and the first line break, so
/// that plans can be written indented in the test source.
fn dedent(text: &str) -> String {
    let text = text.strip_prefix('\n').unwrap_or(text);
    let indent = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(line.get(indent..).unwrap_or("").trim_end());
        out.push('\n');
    }
    out
}

fn check(plan: &str, expect: Expect) {
    let errors = parse_plan(&dedent(plan)).expect_err("the plan should be rejected");
    expect.assert_eq(&format!("{errors}\n"));
}

fn parse(plan: &str) -> Plan {
    match parse_plan(&dedent(plan)) {
        Ok(plan) => plan,
        Err(errors) => panic!("the plan should parse, but:\n{errors}"),
    }
}

fn percent(text: &str) -> Percent {
    Percent::parse(text).expect("valid percent")
}

// ----- fields --------------------------------------------------------------

#[test]
fn unknown_top_level_field() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        stages: [{ percent: 100 }]
        owner: platform-team
        "#,
        expect![[r#"
            5:1: owner: unknown field `owner`; valid fields here: name, component, version, payload, selector, strategy, max_in_flight, stages, gates, on_failure, reversible, exclusive, windows, after
        "#]],
    );
}

#[test]
fn exclusive_is_true_or_false() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        stages: [{ percent: 100 }]
        exclusive: sometimes
        "#,
        expect![[r#"
            5:12: exclusive: expected true or false, found `sometimes`
        "#]],
    );
    let plan = parse_plan("name: p\ncomponent: c\nversion: \"1\"\nstages: [{ percent: 100 }]\n")
        .expect("plan");
    assert!(plan.exclusive, "exclusive by default");
    let plan = parse_plan(
        "name: p\ncomponent: c\nversion: \"1\"\nexclusive: false\nstages: [{ percent: 100 }]\n",
    )
    .expect("plan");
    assert!(!plan.exclusive);
}

#[test]
fn after_names_another_rollout() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        after:
        stages: [{ percent: 100 }]
        "#,
        expect![[r#"
            4:1: after: has no value; name the rollout this one starts after, such as after: docker-17.03.1, or leave the field out
        "#]],
    );
    check(
        r#"
        name: p
        component: c
        version: "1"
        after: [a, b]
        stages: [{ percent: 100 }]
        "#,
        expect![[r#"
            4:8: after: expected a name such as docker-17.03.1, found a list
        "#]],
    );
    check(
        r#"
        name: p
        component: c
        version: "1"
        after: "p"
        stages: [{ percent: 100 }]
        "#,
        expect![[r#"
            4:8: after: `p` is this plan's own name; name another rollout, one that exists, such as after: docker-17.03.1
        "#]],
    );
    check(
        r#"
        name: p
        component: c
        version: "1"
        after: "no spaces please"
        stages: [{ percent: 100 }]
        "#,
        expect![[r#"
            4:11: after: `no spaces please` contains a space; a name may hold only letters, digits, `.`, `_` and `-`, such as docker-17.03.1
        "#]],
    );
    let plan = parse(
        r#"
        name: p
        component: c
        version: "1"
        stages: [{ percent: 100 }]
        after: docker-17.03.1
        "#,
    );
    let after = plan.after.expect("after");
    assert_eq!(
        (after.name.as_str(), after.line, after.column),
        ("docker-17.03.1", 5, 8)
    );
    assert_eq!(
        parse("name: p\ncomponent: c\nversion: \"1\"\nstages: [{ percent: 100 }]\n").after,
        None
    );
}

#[test]
fn unknown_nested_field_suggests_the_closest() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        stages:
          - { percnt: 10 }
          - percent: 100
            bak: 2h
        "#,
        expect![[r#"
            5:7: stages[0].percnt: unknown field `percnt` (did you mean `percent`?); valid fields here: name, percent, bake, approve
            5:7: stages[0]: missing field `percent`; add it, such as percent: 10
            7:5: stages[1].bak: unknown field `bak` (did you mean `bake`?); valid fields here: name, percent, bake, approve
        "#]],
    );
}

#[test]
fn unknown_field_without_a_close_match() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        stages: [{ percent: 100 }]
        gates:
          datadog: []
        "#,
        expect![[r#"
            6:3: gates.datadog: unknown field `datadog`; valid fields here: max_failed, host_timeout, prometheus, http, compare
        "#]],
    );
}

#[test]
fn missing_required_fields() {
    check(
        r#"
        component: c
        stages: [{ percent: 100 }]
        "#,
        expect![[r#"
            1:1: missing field `name`; add it, such as name: docker-17.03.1
            1:1: missing field `version`; add it, such as version: "17.03.1"
        "#]],
    );
}

#[test]
fn empty_file() {
    check(
        "",
        expect![[r#"
        1:1: missing field `name`; add it, such as name: docker-17.03.1
        1:1: missing field `component`; add it, such as component: docker-engine
        1:1: missing field `version`; add it, such as version: "17.03.1"
        1:1: missing field `stages`; add it, such as stages: [{ percent: 10 }, { percent: 100 }]
    "#]],
    );
}

#[test]
fn required_field_without_a_value() {
    check(
        r#"
        name:
        component: c
        version: null
        stages: [{ percent: 100 }]
        "#,
        expect![[r#"
            1:1: name: has no value; write one such as name: docker-17.03.1
            3:1: version: has no value; write one such as version: "17.03.1"
        "#]],
    );
}

#[test]
fn bad_names() {
    check(
        r#"
        name: docker 17.03
        component: ""
        version: "17.03 ce"
        stages: [{ percent: 100 }]
        "#,
        expect![[r#"
            1:13: name: `docker 17.03` contains a space; a name may hold only letters, digits, `.`, `_` and `-`, such as docker-17.03.1
            2:12: component: must not be empty; write a name such as docker-engine
            3:16: version: `17.03 ce` contains a space; a version is one word such as "17.03.1"
        "#]],
    );
}

#[test]
fn name_too_long() {
    let plan = format!(
        "name: {}\ncomponent: c\nversion: \"1\"\nstages: [{{ percent: 100 }}]\n",
        "a".repeat(129)
    );
    let errors = parse_plan(&plan).expect_err("too long");
    expect!["1:7: name: is 129 characters long; a name is at most 128, such as docker-17.03.1"]
        .assert_eq(&errors.to_string());
}

#[test]
fn names_start_with_a_letter_or_digit() {
    check(
        r#"
        name: -rf
        component: ..
        version: "1"
        stages:
          - { name: _first, percent: 100 }
        "#,
        expect![[r#"
            1:7: name: `-rf` starts with `-`; a name starts with a letter or digit, such as docker-17.03.1
            2:12: component: `..` starts with `.`; a name starts with a letter or digit, such as docker-engine
            5:13: stages[0].name: `_first` starts with `_`; a name starts with a letter or digit, such as canary
        "#]],
    );
}

// ----- stages --------------------------------------------------------------

#[test]
fn bad_percents() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        stages:
          - percent: 0
          - percent: abc
          - percent: 0.00001
          - percent: 101
          - percent: "100%"
        "#,
        expect![[r#"
            5:14: stages[0].percent: "0" is zero; a percentage must be greater than 0
            6:14: stages[1].percent: "abc" is not a percentage; write a number greater than 0 and at most 100, such as 5, 0.1 or 25%
            7:14: stages[2].percent: "0.00001" has more than four decimal places; 0.0001 is the finest step
            8:14: stages[3].percent: "101" is more than 100; a percentage is at most 100
        "#]],
    );
}

#[test]
fn decreasing_percents() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        stages:
          - percent: 10
          - percent: 50
          - percent: 25%
          - percent: 100
        "#,
        expect![[r#"
            7:14: stages[2].percent: 25 is less than the 50 of stages[1]; stage percentages are cumulative and never decrease, so write at least 50
        "#]],
    );
}

#[test]
fn last_stage_not_100() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        stages:
          - { percent: 1, bake: 30m }
          - { percent: 50 }
        "#,
        expect![[r#"
            6:16: stages[1].percent: the last stage is at 50, but must be at 100: a rollout completes only once it covers every selected host; add a final stage { percent: 100 }
        "#]],
    );
}

#[test]
fn no_stages() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        stages: []
        "#,
        expect![[r#"
            4:9: stages: expected at least one stage; the last one is { percent: 100 }
        "#]],
    );
}

#[test]
fn bad_durations() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        stages:
          - { percent: 10, bake: 30 }
          - { percent: 100, bake: 1.5h }
        gates:
          host_timeout: 0s
        "#,
        expect![[r#"
            5:26: stages[0].bake: missing unit: "30" is not a duration; write a number followed by s, m, h or d, such as 30s, 15m, 2h, 1d
            6:27: stages[1].bake: unknown unit: "1.5h" is not a duration; write a number followed by s, m, h or d, such as 30s, 15m, 2h, 1d
            8:17: gates.host_timeout: must be longer than 0s; write a duration such as 30s, 15m, 2h or 1d
        "#]],
    );
}

#[test]
fn duplicate_stage_names() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        stages:
          - { name: canary, percent: 1 }
          - { name: canary, percent: 10 }
          - { name: stage-4, percent: 50 }
          - { percent: 100 }
        "#,
        expect![[r#"
            6:13: stages[1].name: stage name `canary` is already used by stages[0]; give every stage its own name
            8:7: stages[3]: this stage is named `stage-4` by default, which stages[2] already uses; give one of them another name
        "#]],
    );
}

#[test]
fn non_bool_approve() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        stages:
          - { percent: 1, approve: yes }
          - { percent: 100, approve: "true" }
        "#,
        expect![[r#"
            5:28: stages[0].approve: expected true or false, found `yes`
        "#]],
    );
}

// ----- selector, strategy, limits ------------------------------------------

#[test]
fn bad_selector_points_inside_it() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        selector: "role notin (build-agent), site on (sto)"
        stages: [{ percent: 100 }]
        "#,
        expect![[r#"
            4:43: selector: expected an operator or , after site, found on; valid operators are =, ==, !=, in, notin
        "#]],
    );
}

#[test]
fn bad_strategy() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        strategy:
          spread: [role, site, role, "data center"]
          min_per_stratum: -1
          salt: ""
        stages: [{ percent: 100 }]
        "#,
        expect![[r#"
            5:24: strategy.spread[2]: `role` is already listed at strategy.spread[0]; list each label once
            5:35: strategy.spread[3]: `data center` contains a space; a label name holds only letters, digits, `.`, `_`, `-` and `/`, such as role
            6:20: strategy.min_per_stratum: expected a whole number such as 2, found `-1`
            7:9: strategy.salt: must not be empty; write a string such as "2024-03", or leave salt out to use the plan's name
        "#]],
    );
}

#[test]
fn bad_max_in_flight() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        max_in_flight: 0
        stages: [{ percent: 100 }]
        "#,
        expect![[r#"
            4:16: max_in_flight: must be at least 1; write a count of hosts such as 10 or a percentage such as 5%, or leave it out for no limit
        "#]],
    );
    check(
        r#"
        name: p
        component: c
        version: "1"
        max_in_flight: 2.5
        stages: [{ percent: 100 }]
        "#,
        expect![[r#"
            4:16: max_in_flight: "2.5" is neither a count nor a percentage; write a whole number such as 2, or a percentage such as 5%
        "#]],
    );
}

#[test]
fn bad_max_failed() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        stages: [{ percent: 100 }]
        gates:
          max_failed: a few
        "#,
        expect![[r#"
            6:15: gates.max_failed: "a few" is neither a count nor a percentage; write a whole number such as 2, or a percentage such as 5%
        "#]],
    );
}

#[test]
fn bad_on_failure_and_reversible() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        stages: [{ percent: 100 }]
        on_failure: rolback
        reversible: no
        "#,
        expect![[r#"
            5:13: on_failure: expected pause or rollback, found `rolback` (did you mean `rollback`?)
            6:13: reversible: expected true or false, found `no`
        "#]],
    );
}

// ----- gates ---------------------------------------------------------------

#[test]
fn duplicate_gate_names_across_kinds() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        stages: [{ percent: 100 }]
        gates:
          prometheus:
            - { name: errors, url: "http://prom:9090", query: up, fail_if: "< 1" }
          http:
            - { name: errors, url: "http://slo.example.net/ok" }
        "#,
        expect![[r#"
            9:15: gates.http[0].name: gate name `errors` is already used by gates.prometheus[0]; give every gate its own name
        "#]],
    );
}

#[test]
fn bad_fail_if() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        stages: [{ percent: 100 }]
        gates:
          prometheus:
            - { name: a, url: "http://prom:9090", query: up, fail_if: "0.5" }
            - { name: b, url: "http://prom:9090", query: up, fail_if: "=> 0.5" }
            - { name: c, url: "http://prom:9090", query: up, fail_if: "> lots" }
        "#,
        expect![[r#"
            7:63: gates.prometheus[0].fail_if: expected a comparison and a number such as "> 0.5" (comparisons: >, >=, <, <=, ==, !=), found `0.5`
            8:63: gates.prometheus[1].fail_if: expected a comparison and a number such as "> 0.5" (comparisons: >, >=, <, <=, ==, !=), found `=> 0.5`
            9:63: gates.prometheus[2].fail_if: expected a comparison and a number such as "> 0.5" (comparisons: >, >=, <, <=, ==, !=), found `> lots`
        "#]],
    );
}

#[test]
fn unquoted_fail_if_is_a_yaml_error_with_a_hint() {
    check(
        r#"
        name: p
        gates:
          prometheus:
            - name: a
              fail_if: > 0.5
        "#,
        expect![[r#"
            5:16: invalid yaml: while scanning a block scalar, did not find expected comment or line break; quote a value that starts with `>` or `|`, such as fail_if: "> 0.5"
        "#]],
    );
    check(
        r#"
        name: p
        gates:
          prometheus:
            - { name: a, fail_if: != 0 }
        "#,
        expect![[r#"
            4:30: yaml tags (!tag) are not supported; quote a value that starts with `!`, such as fail_if: "!= 0"
        "#]],
    );
}

#[test]
fn bad_gate_fields() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        stages: [{ percent: 100 }]
        gates:
          prometheus:
            - name: restarts
              url: prometheus:9090
              query: ""
              fail_if: "> 0.5"
              for: 0
              interval: 0s
              no_data: ignore
              report_only: 1
          http:
            - { name: slo, url: "ftp://slo.example.net/ok", timeout: soon }
            - { url: "https://slo.example.net/ok", no_data: pass }
        "#,
        expect![[r#"
            8:12: gates.prometheus[0].url: expected an http:// or https:// url such as http://prometheus:9090, found `prometheus:9090`
            9:14: gates.prometheus[0].query: must not be empty; write a promql query such as sum(rate(errors_total[5m]))
            11:12: gates.prometheus[0].for: must be at least 1, found 0
            12:17: gates.prometheus[0].interval: must be longer than 0s; write a duration such as 30s, 15m, 2h or 1d
            13:16: gates.prometheus[0].no_data: expected fail, pause or pass, found `ignore`
            14:20: gates.prometheus[0].report_only: expected true or false, found `1`
            16:25: gates.http[0].url: expected an http:// or https:// url such as http://slo.example.net/ok, found `ftp://slo.example.net/ok`
            16:62: gates.http[0].timeout: expected a number: "soon" is not a duration; write a number followed by s, m, h or d, such as 30s, 15m, 2h, 1d
            17:9: gates.http[1]: missing field `name`; add it, such as name: error-rate
            17:44: gates.http[1].no_data: unknown field `no_data`; valid fields here: name, url, interval, timeout, for, report_only
        "#]],
    );
}

#[test]
fn bad_urls() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        stages: [{ percent: 100 }]
        gates:
          http:
            - { name: a, url: "slo.example.net/ok" }
            - { name: b, url: "http://" }
            - { name: c, url: "https://slo.example.net/a b" }
            - { name: d, url: [http://slo.example.net] }
        "#,
        expect![[r#"
            7:23: gates.http[0].url: expected an http:// or https:// url such as http://slo.example.net/ok, found `slo.example.net/ok`
            8:23: gates.http[1].url: `http://` has no host; write a url such as http://slo.example.net/ok
            9:49: gates.http[2].url: `https://slo.example.net/a b` contains a space; percent-encode it (a space is %20), as in http://slo.example.net/ok
            10:23: gates.http[3].url: expected an http:// or https:// url such as http://slo.example.net/ok, found a list
        "#]],
    );
}

// ----- windows -------------------------------------------------------------

#[test]
fn unknown_time_zone() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        stages: [{ percent: 100 }]
        windows: { days: mon-thu, tz: Europe/Stokholm }
        "#,
        expect![[r#"
            5:31: windows.tz: unknown time zone `Europe/Stokholm`; write an IANA name such as Europe/Stockholm or UTC
        "#]],
    );
}

#[test]
fn bad_hours_and_days() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        stages: [{ percent: 100 }]
        windows:
          - { days: "mon,tue,thr", hours: "09:00-16:00" }
          - { days: sat-sun, hours: "10:00-25:00" }
          - { hours: 9-17 }
          - { days: [mon, frday] }
          - { tz: UTC }
        "#,
        expect![[r#"
            6:22: windows[0].days: unknown day `thr`; write mon, tue, wed, thu, fri, sat or sun, ranges such as mon-fri, lists such as mon,wed,fri, or daily
            7:36: windows[1].hours: `25:00` is not a time of day; write HH:MM from 00:00 to 23:59 (or 24:00 as an end), such as 09:00-16:00
            8:14: windows[2].hours: `9` is not a time of day; write HH:MM from 00:00 to 23:59, such as 09:00-16:00
            9:19: windows[3].days[1]: unknown day `frday`; write mon, tue, wed, thu, fri, sat or sun, ranges such as mon-fri, lists such as mon,wed,fri, or daily
            10:7: windows[4]: a window needs days, hours or both, such as { days: mon-thu, hours: "09:00-16:00" }
        "#]],
    );
}

// ----- shapes and YAML -----------------------------------------------------

#[test]
fn list_where_a_mapping_is_expected() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        strategy: [role, site]
        stages:
          - [100]
        gates: []
        "#,
        expect![[r#"
            4:11: strategy: expected a mapping with fields spread, min_per_stratum, salt, found a list
            6:5: stages[0]: expected a mapping with fields name, percent, bake, approve, found a list
            7:8: gates: expected a mapping with fields max_failed, host_timeout, prometheus, http, compare, found a list
        "#]],
    );
}

#[test]
fn mapping_where_a_list_or_scalar_is_expected() {
    check(
        r#"
        name: { first: p }
        component: c
        version: "1"
        stages: { percent: 100 }
        "#,
        expect![[r#"
            1:9: name: expected a name such as docker-17.03.1, found a mapping
            4:11: stages: expected a list such as [{ percent: 10 }, { percent: 100 }], found a mapping
        "#]],
    );
}

#[test]
fn duplicate_yaml_key() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        stages:
          - percent: 10
            bake: 1h
            percent: 20
          - percent: 100
        "#,
        expect![[r#"
            7:5: stages[0].percent: duplicate key `percent`, first given at line 5, column 5; give each field once
        "#]],
    );
}

#[test]
fn yaml_syntax_error() {
    check(
        r#"
        name: p
        component: c
        stages: [{ percent: 10 }, { percent: 100 }
        version: "1"
        "#,
        expect![[r#"
            4:1: invalid yaml: invalid indentation in flow construct
        "#]],
    );
}

#[test]
fn top_level_must_be_a_mapping() {
    check(
        "- name: p\n",
        expect![[r#"
        1:1: expected a plan: a mapping with fields such as name, component, version and stages
    "#]],
    );
}

#[test]
fn anchors_are_not_supported() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        stages:
          - &early { percent: 10 }
          - *early
        "#,
        expect![[r#"
            5:12: yaml anchors and aliases (&name, *name) are not supported; write the value out in full
        "#]],
    );
}

#[test]
fn second_document_is_an_error() {
    check(
        r#"
        ---
        name: p
        component: c
        version: "1"
        stages: [{ percent: 100 }]
        ---
        name: q
        "#,
        expect![[r#"
            6:1: a plan file holds one yaml document; remove this and what follows, or move it to a file of its own
        "#]],
    );
}

#[test]
fn several_problems_are_all_reported_in_order() {
    check(
        r#"
        name: p
        version: "1"
        max_in_flight: 0
        strategy:
          spred: [role]
        stages:
          - { percent: 50, bake: forever }
          - { percent: 20 }
        gates:
          max_failed: -1
          http:
            - { name: slo, url: slo.example.net }
        on_failure: stop
        windows: { days: weekdays, tz: Mars/Olympus }
        "#,
        expect![[r#"
            1:1: missing field `component`; add it, such as component: docker-engine
            3:16: max_in_flight: must be at least 1; write a count of hosts such as 10 or a percentage such as 5%, or leave it out for no limit
            5:3: strategy.spred: unknown field `spred` (did you mean `spread`?); valid fields here: spread, min_per_stratum, salt
            7:26: stages[0].bake: expected a number: "forever" is not a duration; write a number followed by s, m, h or d, such as 30s, 15m, 2h, 1d
            8:16: stages[1].percent: 20 is less than the 50 of stages[0]; stage percentages are cumulative and never decrease, so write at least 50
            8:16: stages[1].percent: the last stage is at 20, but must be at 100: a rollout completes only once it covers every selected host; add a final stage { percent: 100 }
            10:15: gates.max_failed: "-1" is neither a count nor a percentage; write a whole number such as 2, or a percentage such as 5%
            12:25: gates.http[0].url: expected an http:// or https:// url such as http://slo.example.net/ok, found `slo.example.net`
            13:13: on_failure: expected pause or rollback, found `stop`
            14:18: windows.days: unknown day `weekdays`; write mon, tue, wed, thu, fri, sat or sun, ranges such as mon-fri, lists such as mon,wed,fri, or daily
            14:32: windows.tz: unknown time zone `Mars/Olympus`; write an IANA name such as Europe/Stockholm or UTC
        "#]],
    );
}

#[test]
fn json_plan_errors_are_located_too() {
    check(
        r#"
        {
          "name": "p",
          "component": "c",
          "version": "1",
          "stages": [{ "percent": 0 }, { "percent": 100, "bake": "1y" }]
        }
        "#,
        expect![[r#"
            5:27: stages[0].percent: "0" is zero; a percentage must be greater than 0
            5:58: stages[1].bake: unknown unit: "1y" is not a duration; write a number followed by s, m, h or d, such as 30s, 15m, 2h, 1d
        "#]],
    );
}

#[test]
fn bad_compare_gate_fields() {
    check(
        r#"
        name: p
        component: c
        version: "1"
        stages: [{ percent: 100 }]
        gates:
          compare:
            - name: restarts
              url: http://prometheus:9090
              query: rate(x[5m])
              aggregate: average
              fail_if: "> 1.5"
              min_hosts: 0
            - name: latency
              url: http://prometheus:9090
              query: latency
              fail_if: "ratio > 1.5"
              test: mann-whitney
            - name: errors
              url: http://prometheus:9090
              query: errors
              test: wilcoxon
              confidence: 1.5
              direction: up
            - name: cpu
              url: http://prometheus:9090
              query: cpu
              confidence: 0.9
        "#,
        expect![[r#"
            10:18: gates.compare[0].aggregate: expected mean, median or p90, found `average`
            11:16: gates.compare[0].fail_if: expected `ratio` or `diff`, a comparison and a number, such as "ratio > 1.5" or "diff > 0.2", found `> 1.5`
            12:18: gates.compare[0].min_hosts: must be at least 1, found 0
            17:13: gates.compare[1].test: is given with fail_if; judge by fail_if (a ratio or a difference) or by test: mann-whitney, not both
            21:13: gates.compare[2].test: expected mann-whitney, found `wilcoxon`
            22:19: gates.compare[2].confidence: expected a number between 0 and 1 (both excluded) such as 0.98, found `1.5`
            23:18: gates.compare[2].direction: expected increase, decrease or either, found `up`
            24:7: gates.compare[3]: missing field `fail_if` or `test`; add one, such as fail_if: "ratio > 1.5" or test: mann-whitney
            27:19: gates.compare[3].confidence: goes with test: mann-whitney; add it, or leave this out
        "#]],
    );
}

// ----- plans that parse ----------------------------------------------------

#[test]
fn spec_example_plan_parses() {
    let plan = parse_plan(include_str!("../../../examples/plan-docker.yaml"))
        .unwrap_or_else(|errors| panic!("examples/plan-docker.yaml:\n{errors}"));
    assert_eq!(plan.name, "docker-17.03.1");
    assert_eq!(plan.component, "docker-engine");
    assert_eq!(plan.version, "17.03.1");
    assert_eq!(
        plan.payload.as_ref().and_then(|p| p["url"].as_str()),
        Some("https://repo.example.net/docker-ce_17.03.1.deb")
    );
    assert_eq!(plan.strategy.spread, ["role", "site"]);
    assert_eq!(plan.strategy.min_per_stratum, 1);
    assert_eq!(plan.salt(), "docker-17.03.1");
    assert_eq!(plan.max_in_flight, Some(Amount::Percent(percent("5"))));
    let stages: Vec<String> = plan
        .stages
        .iter()
        .map(|s| {
            format!(
                "{} {}% bake {} approve {}",
                s.name, s.percent, s.bake, s.approve
            )
        })
        .collect();
    assert_eq!(
        stages,
        [
            "canary 1% bake 30m approve true",
            "stage-2 10% bake 2h approve false",
            "stage-3 50% bake 4h approve false",
            "stage-4 100% bake 0s approve false",
        ]
    );
    assert_eq!(plan.gates.max_failed, Amount::Count(2));
    assert_eq!(plan.gates.host_timeout, Duration::from_secs(900));
    let prometheus = &plan.gates.prometheus[0];
    assert_eq!(prometheus.common.name, "container-restarts");
    assert_eq!(prometheus.common.consecutive, 3);
    assert_eq!(prometheus.common.interval, Duration::from_secs(30));
    assert_eq!(prometheus.common.no_data, NoData::Fail);
    assert_eq!(prometheus.url, "http://prometheus:9090");
    assert_eq!(prometheus.query, "sum(rate(container_restarts_total[5m]))");
    assert_eq!(prometheus.fail_if.op, Comparison::Greater);
    assert_eq!(prometheus.fail_if.to_string(), "> 0.5");
    let http = &plan.gates.http[0];
    assert_eq!(http.common.name, "slo-check");
    assert_eq!(http.timeout, Duration::from_secs(10));
    assert_eq!(plan.on_failure, OnFailure::Rollback);
    assert!(plan.reversible);
    assert_eq!(plan.windows.len(), 1);
    assert_eq!(
        plan.windows[0].to_string(),
        "mon-thu 09:00-16:00 Europe/Stockholm"
    );
}

#[test]
fn canary_example_plan_parses() {
    let plan = parse_plan(include_str!("../../../examples/plan-canary.yaml"))
        .unwrap_or_else(|errors| panic!("examples/plan-canary.yaml:\n{errors}"));
    let compare = &plan.gates.compare[0];
    assert_eq!(compare.common.name, "restarts-vs-baseline");
    assert_eq!(compare.query, "rate(container_restarts_total[5m])");
    assert_eq!(compare.aggregate, Aggregate::Mean);
    assert_eq!(compare.judge.to_string(), "ratio > 1.5");
    assert_eq!(compare.min_hosts, 3);
    assert_eq!(compare.common.consecutive, 3);
    assert_eq!(compare.common.interval, Duration::from_secs(60));
    assert_eq!(compare.common.no_data, NoData::Pass);
    assert_eq!(plan.gates.prometheus.len(), 1);
}

#[test]
fn compare_gate_defaults_and_the_statistical_judge() {
    let plan = parse(
        r#"
        name: p
        component: c
        version: "1"
        stages: [{ percent: 100 }]
        gates:
          compare:
            - { name: a, url: "http://p:9090", query: q, fail_if: "diff >= 0.2" }
            - { name: b, url: "http://p:9090", query: q, test: mann-whitney, aggregate: p90 }
            - { name: c, url: "http://p:9090", query: q, test: mann-whitney, confidence: 0.95, direction: either }
        "#,
    );
    let [a, b, c] = &plan.gates.compare[..] else {
        panic!("three gates: {:?}", plan.gates.compare);
    };
    assert_eq!(a.aggregate, Aggregate::Mean);
    assert_eq!(a.min_hosts, 3);
    assert_eq!(a.common.no_data, NoData::Fail);
    assert!(
        matches!(a.judge, Judge::Diff(t) if t.op == Comparison::GreaterOrEqual && t.value == 0.2)
    );
    assert_eq!(b.aggregate, Aggregate::P90);
    assert_eq!(
        b.judge,
        Judge::MannWhitney {
            confidence: 0.98,
            direction: Direction::Increase
        }
    );
    assert_eq!(
        c.judge,
        Judge::MannWhitney {
            confidence: 0.95,
            direction: Direction::Either
        }
    );
}

#[test]
fn agent_upgrade_example_plan_parses() {
    let plan = parse_plan(include_str!("../../../examples/plan-agent.yaml"))
        .unwrap_or_else(|errors| panic!("examples/plan-agent.yaml:\n{errors}"));
    assert_eq!(plan.component, "sluice-agent");
    assert!(plan.stages[0].approve, "a human looks at the canary");
    assert_eq!(plan.gates.max_failed, Amount::Count(0));
}

#[test]
fn minimal_example_plan_gets_the_defaults() {
    let plan = parse_plan(include_str!("../../../examples/plan-minimal.yaml"))
        .unwrap_or_else(|errors| panic!("examples/plan-minimal.yaml:\n{errors}"));
    assert_eq!(plan.version, "42");
    assert_eq!(plan.payload, None);
    assert_eq!(plan.selector, Default::default());
    assert!(plan.strategy.spread.is_empty());
    assert_eq!(plan.strategy.min_per_stratum, 1);
    assert_eq!(plan.strategy.salt, None);
    assert_eq!(plan.max_in_flight, None);
    assert_eq!(plan.stages.len(), 1);
    assert_eq!(plan.stages[0].name, "stage-1");
    assert_eq!(plan.stages[0].percent, Percent::HUNDRED);
    assert!(plan.stages[0].bake.is_zero());
    assert!(!plan.stages[0].approve);
    assert_eq!(plan.gates.max_failed, Amount::Count(0));
    assert_eq!(plan.gates.host_timeout, Duration::from_secs(15 * 60));
    assert!(plan.gates.prometheus.is_empty() && plan.gates.http.is_empty());
    assert_eq!(plan.on_failure, OnFailure::Pause);
    assert!(plan.reversible);
    assert!(plan.windows.is_empty());
}

#[test]
fn json_plan_parses() {
    let plan = parse(
        r#"
        {
          "name": "kernel-6.1",
          "component": "kernel",
          "version": "6.1.0-18",
          "payload": { "package": "linux-image-6.1.0-18", "reboot": true, "retries": 3, "ratio": 0.5, "note": null },
          "strategy": { "spread": ["site"], "min_per_stratum": 0, "salt": "k61" },
          "max_in_flight": 10,
          "stages": [{ "percent": 0.1 }, { "percent": "5%", "approve": true }, { "percent": 100 }],
          "gates": { "max_failed": "1%", "http": [{ "name": "ok", "url": "https://ok.example.net", "for": 2 }] },
          "reversible": false,
          "windows": [{ "days": "sat-mon", "hours": "22:00-06:00" }]
        }
        "#,
    );
    assert_eq!(plan.version, "6.1.0-18");
    assert_eq!(
        plan.payload,
        Some(serde_json::json!({
            "package": "linux-image-6.1.0-18", "reboot": true, "retries": 3, "ratio": 0.5, "note": null
        }))
    );
    assert_eq!(plan.strategy.min_per_stratum, 0);
    assert_eq!(plan.salt(), "k61");
    assert_eq!(plan.max_in_flight, Some(Amount::Count(10)));
    assert_eq!(plan.stages[0].percent, percent("0.1"));
    assert_eq!(plan.stages[1].percent, percent("5"));
    assert!(plan.stages[1].approve);
    assert_eq!(plan.gates.max_failed, Amount::Percent(percent("1")));
    assert_eq!(plan.gates.http[0].common.consecutive, 2);
    assert!(!plan.reversible);
    assert_eq!(plan.windows[0].to_string(), "mon,sat-sun 22:00-06:00 UTC");
}

#[test]
fn unquoted_numbers_keep_their_text() {
    let plan = parse(
        r#"
        name: docker-17.03
        component: docker-engine
        version: 17.10
        payload:
          version: 17.10
          quoted: "true"
          plain: true
          big: 18446744073709551615
          exp: 1e3
          text: hello world
          list: [1, "2", ~]
        stages: [{ percent: 100 }]
        "#,
    );
    assert_eq!(plan.version, "17.10");
    assert_eq!(
        plan.payload,
        Some(serde_json::json!({
            "version": 17.1,
            "quoted": "true",
            "plain": true,
            "big": 18446744073709551615u64,
            "exp": 1000.0,
            "text": "hello world",
            "list": [1, "2", null],
        }))
    );
}

#[test]
fn empty_optional_fields_take_their_defaults() {
    let plan = parse(
        r#"
        name: p
        component: c
        version: "1"
        selector: ""
        strategy:
        max_in_flight:
        stages:
          - percent: 100
            bake:
        gates: ~
        windows: []
        "#,
    );
    assert_eq!(plan.selector, Default::default());
    assert_eq!(plan.strategy.min_per_stratum, 1);
    assert_eq!(plan.max_in_flight, None);
    assert!(plan.stages[0].bake.is_zero());
    assert_eq!(plan.gates.host_timeout, Duration::from_secs(900));
    assert!(plan.windows.is_empty());
}

#[test]
fn windows_may_be_a_list_and_days_a_list() {
    let plan = parse(
        r#"
        name: p
        component: c
        version: "1"
        stages: [{ percent: 100 }]
        windows:
          - { days: [mon, wed-thu], hours: "09:00-12:00", tz: europe/stockholm }
          - { days: daily, hours: "18:00-24:00" }
          - { days: sun }
        "#,
    );
    let windows: Vec<String> = plan.windows.iter().map(ToString::to_string).collect();
    assert_eq!(
        windows,
        [
            "mon,wed-thu 09:00-12:00 Europe/Stockholm",
            "daily 18:00-24:00 UTC",
            "sun UTC",
        ]
    );
}

#[test]
fn equal_percentages_are_allowed() {
    let plan = parse(
        r#"
        name: p
        component: c
        version: "1"
        stages:
          - { name: half, percent: 50 }
          - { name: half-approved, percent: 50, approve: true }
          - { name: all, percent: 100% }
        "#,
    );
    assert_eq!(plan.stages[1].percent, plan.stages[0].percent);
}
