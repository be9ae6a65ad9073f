//! Typing `[[service]]` sections: the generated configuration, foreign and misspelt keys,
//! the type, values of the wrong kind.

use super::*;

/// A problem as (line, key, message).
type Lined = (usize, String, String);

/// Each `[[service]]` of `text`, typed or refused, and the line of each problem.
fn sections(text: &str) -> Vec<Result<Service, Vec<Lined>>> {
    let mut root = DeTable::parse(text).expect("valid TOML");
    let mut found = Vec::new();
    let sections = crate::config::service_sections(root.get_mut().remove("service"), &mut found);
    assert!(found.is_empty());
    sections
        .into_iter()
        .map(|(index, section)| {
            Service::from_section(index, section).map_err(|problems| {
                problems
                    .into_iter()
                    .map(|(span, key, message)| {
                        (text[..span.start].matches('\n').count() + 1, key, message)
                    })
                    .collect()
            })
        })
        .collect()
}

fn refused(text: &str) -> Vec<Lined> {
    sections(text)
        .into_iter()
        .flat_map(|s| s.err().unwrap_or_default())
        .collect()
}

#[test]
fn the_generated_configuration_is_typed_without_a_problem() {
    let kinds: Vec<&str> = sections(crate::init::DEFAULT_CONFIG)
        .into_iter()
        .map(|s| s.expect("typed").type_name())
        .collect();
    assert_eq!(kinds, ["ssh", "ftp", "ftps-implicit", "https", "manager"]);
}

#[test]
fn a_key_of_another_type_is_refused_at_its_line_with_its_owners() {
    let text = "[[service]]\nname = \"f\"\ntype = \"ftp\"\ntls = \"off\"\nkex = [\"curve25519-sha256\"]\n\n\
                [[service]]\nname = \"w\"\ntype = \"https\"\npassive_ports = [50000, 50100]\n\
                max_auth_tries = 2\n\n\
                [[service]]\nname = \"s\"\ntype = \"ssh\"\nsession_timeout = 60\n\n\
                [[service]]\nname = \"i\"\ntype = \"ftps-implicit\"\ntls = \"off\"\n\n\
                [[service]]\nname = \"h\"\ntype = \"http\"\nhost_keys = []\n";
    let problems = refused(text);
    let at = |line: usize| {
        problems
            .iter()
            .find(|(l, _, _)| *l == line)
            .unwrap_or_else(|| panic!("nothing at line {line}: {problems:?}"))
    };
    let (_, key, message) = at(5);
    assert_eq!(key, "service[0].kex");
    assert!(
        message.contains("not a setting of an ftp service") && message.contains("ssh services")
    );
    let (_, key, message) = at(10);
    assert_eq!(key, "service[1].passive_ports");
    assert!(message.contains("https service") && message.contains("ftp and ftps-implicit"));
    let (_, key, message) = at(11);
    assert_eq!(key, "service[1].max_auth_tries");
    assert!(message.contains("applies to ssh and ftp"), "{message}");
    let (_, key, message) = at(16);
    assert_eq!(key, "service[2].session_timeout");
    assert!(
        message.contains("http and manager services (http, https and manager)"),
        "{message}"
    );
    let (_, key, message) = at(21);
    assert_eq!(key, "service[3].tls");
    assert!(message.contains("always TLS"), "{message}");
    let (_, key, message) = at(26);
    assert_eq!(key, "service[4].host_keys");
    assert!(message.contains("ssh services"), "{message}");
    assert_eq!(problems.len(), 6, "{problems:?}");
}

#[test]
fn a_misspelt_key_is_refused_with_the_nearest_key() {
    let problems = refused("[[service]]\nname = \"s\"\ntype = \"ssh\"\nmax_auth_triez = 3\n");
    assert_eq!(problems.len(), 1);
    let (line, key, message) = &problems[0];
    assert_eq!((*line, key.as_str()), (4, "service[0].max_auth_triez"));
    assert!(
        message.contains("did you mean `max_auth_tries`"),
        "{message}"
    );
}

#[test]
fn the_type_decides_and_is_checked_first() {
    for (text, expected) in [
        ("[[service]]\nname = \"x\"\n", "required"),
        (
            "[[service]]\nname = \"x\"\ntype = \"telnet\"\n",
            "unknown service type",
        ),
        ("[[service]]\nname = \"x\"\ntype = 3\n", "a string"),
    ] {
        let problems = refused(text);
        assert_eq!(problems.len(), 1, "{text}: {problems:?}");
        assert_eq!(problems[0].1, "service[0].type");
        assert!(problems[0].2.contains(expected), "{text}: {problems:?}");
    }
}

#[test]
fn a_value_of_the_wrong_kind_names_its_key_and_a_bad_policy_is_refused() {
    let problems = refused(
        "[[service]]\nname = \"f\"\ntype = \"ftp\"\ndata_timeout = \"soon\"\ntls = \"maybe\"\n",
    );
    let keys: Vec<(usize, &str)> = problems.iter().map(|(l, k, _)| (*l, k.as_str())).collect();
    assert_eq!(
        keys,
        [(4, "service[0].data_timeout"), (5, "service[0].tls")]
    );
    assert!(problems[1].2.contains("not a policy"));
}

#[test]
fn no_key_is_in_two_groups_of_one_type() {
    for ty in Type::ALL {
        let mut seen = std::collections::HashSet::new();
        for group in ty.groups() {
            for key in group.keys() {
                assert!(seen.insert(*key), "{key} twice in {}", ty.name());
            }
        }
    }
}
