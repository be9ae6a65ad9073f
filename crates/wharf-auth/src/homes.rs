//! Where a home given by an LDAP directory or an HTTP service may lie.
//!
//! A home from outside Wharf's own store (`homeDirectory`, an HTTP answer's `home`) becomes
//! the folder an account's session is jailed to, with the server's rights: `/` or `/etc`
//! there would expose the whole machine. Such a home is normalised lexically (`.` and `..`
//! resolved as text, so `/x/../../../etc` is `/etc`) and must then lie strictly beneath one
//! of the method's roots; a relative home is refused outright.
//!
//! This module only compares paths: it never touches the filesystem, so a root is what the
//! configuration says, and links inside it are the administrator's own.

use std::path::{Component, Path, PathBuf};

use wharf_store::GroupRecord;

use crate::AuthFailure;

/// The folders a given home must lie beneath, for one method.
#[derive(Debug, Clone)]
pub struct HomeRoots {
    /// Configured roots (`home_roots`), or the data folder's `homes` by default; normalised.
    roots: Vec<PathBuf>,
    /// Also accept homes beneath the roots of the account's groups' home templates (the
    /// default, when `home_roots` is not configured).
    templates: bool,
}

impl Default for HomeRoots {
    /// Only the account's groups' template roots.
    fn default() -> Self {
        HomeRoots {
            roots: Vec::new(),
            templates: true,
        }
    }
}

impl HomeRoots {
    /// Exactly `roots` (the `home_roots` key). Relative roots and `/` are dropped: the
    /// configuration refuses them before this is built.
    pub fn configured(roots: impl IntoIterator<Item = PathBuf>) -> HomeRoots {
        HomeRoots {
            roots: usable(roots),
            templates: false,
        }
    }

    /// The default: `homes` (the data folder's homes folder, given in each spelling it
    /// has, e.g. as configured and as canonicalised) and the account's groups' template
    /// roots.
    pub fn default_with(homes: impl IntoIterator<Item = PathBuf>) -> HomeRoots {
        HomeRoots {
            roots: usable(homes),
            templates: true,
        }
    }

    /// The normalised home for `given`, when it lies strictly beneath a root; otherwise why
    /// not. `groups` are the account's groups (for their template roots).
    pub fn confine(&self, given: &str, groups: &[GroupRecord]) -> Result<PathBuf, AuthFailure> {
        if given.chars().any(char::is_control) {
            return Err(AuthFailure::HomeNotAllowed(format!(
                "{:?} holds control characters",
                given.escape_debug().to_string()
            )));
        }
        let Some(home) = normalise_home(Path::new(given)) else {
            return Err(AuthFailure::HomeNotAllowed(format!(
                "{given:?} is not an absolute path"
            )));
        };
        let mut roots = self.roots.clone();
        if self.templates {
            let templates = groups.iter().filter_map(|g| g.home_template.as_deref());
            roots.extend(templates.filter_map(template_root));
        }
        if roots
            .iter()
            .any(|root| home != *root && home.starts_with(root))
        {
            return Ok(home);
        }
        let shown = if Path::new(given) == home {
            format!("{}", home.display())
        } else {
            format!("{} (given as {given:?})", home.display())
        };
        let allowed = if roots.is_empty() {
            "no root is configured".to_owned()
        } else {
            let list: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
            format!("allowed beneath {}", list.join(", "))
        };
        Err(AuthFailure::HomeNotAllowed(format!(
            "{shown} is not beneath any home root ({allowed})"
        )))
    }
}

fn usable(roots: impl IntoIterator<Item = PathBuf>) -> Vec<PathBuf> {
    let mut kept: Vec<PathBuf> = Vec::new();
    for root in roots {
        if let Some(root) = normalise_home(&root)
            && root != Path::new("/")
            && !kept.contains(&root)
        {
            kept.push(root);
        }
    }
    kept
}

/// `path` with `.` and `..` resolved as text (`..` at `/` stays at `/`), or `None` when
/// it is not absolute.
pub fn normalise_home(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::from("/");
    let mut components = path.components();
    if components.next() != Some(Component::RootDir) {
        return None;
    }
    for component in components {
        match component {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// The folder above the first part of a home template that holds a placeholder
/// (`/srv/wharf/${USER}` → `/srv/wharf`); `None` when that is `/` or the template is not
/// absolute, since such a root would confine nothing.
pub fn template_root(template: &str) -> Option<PathBuf> {
    let fixed: Vec<&str> = template
        .split('/')
        .take_while(|part| !part.contains('$'))
        .collect();
    let root = normalise_home(Path::new(&fixed.join("/")))?;
    (root != Path::new("/")).then_some(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(template: Option<&str>) -> GroupRecord {
        GroupRecord {
            name: "g".into(),
            home_template: template.map(str::to_owned),
            create_home: false,
            rules: Vec::new(),
            protocols: Vec::new(),
            upload_mode: None,
            addresses: Default::default(),
            require_second_factor: false,
            max_file_size: None,
            email: None,
        }
    }

    #[test]
    fn homes_are_normalised_as_text() {
        let n = |s: &str| normalise_home(Path::new(s)).map(|p| p.display().to_string());
        assert_eq!(n("/x/../../../etc").as_deref(), Some("/etc"));
        assert_eq!(n("/srv/./homes//a/").as_deref(), Some("/srv/homes/a"));
        assert_eq!(n("/").as_deref(), Some("/"));
        assert_eq!(n("srv/homes"), None);
        assert_eq!(n("../etc"), None);
        assert_eq!(n(""), None);
    }

    #[test]
    fn template_roots_stop_at_the_first_placeholder() {
        let r = |s: &str| template_root(s).map(|p| p.display().to_string());
        assert_eq!(r("/srv/wharf/${USER}").as_deref(), Some("/srv/wharf"));
        assert_eq!(r("/srv/${USER}/files").as_deref(), Some("/srv"));
        assert_eq!(r("/data/x${USER}").as_deref(), Some("/data"));
        assert_eq!(r("/${USER}"), None);
        assert_eq!(r("relative/${USER}"), None);
        assert_eq!(r("/srv/a/../${USER}").as_deref(), Some("/srv"));
    }

    #[test]
    fn a_given_home_must_lie_strictly_beneath_a_root() {
        let homes = HomeRoots::default_with([PathBuf::from("/var/lib/wharf/homes")]);
        let partners = [group(Some("/srv/partners/${USER}"))];
        let ok = |h: &str| homes.confine(h, &partners).map(|p| p.display().to_string());
        assert_eq!(
            ok("/var/lib/wharf/homes/lara").unwrap(),
            "/var/lib/wharf/homes/lara"
        );
        assert_eq!(ok("/srv/partners/hal/in").unwrap(), "/srv/partners/hal/in");
        assert_eq!(
            ok("/srv/partners/x/../hal").unwrap(),
            "/srv/partners/hal",
            "normalised home is used"
        );
        for refused in [
            "/",
            "/etc",
            "/x/../../../etc",
            "/srv/partners",
            "/srv/partners/..",
            "/srv/partners/../../etc",
            "/var/lib/wharf/homes",
            "/var/lib/wharf/homes2/x",
            "/srv/partnersX/a",
            "relative/home",
            "/var/lib/wharf/homes/a\nb",
        ] {
            let e = homes.confine(refused, &partners).unwrap_err();
            assert_eq!(e.code(), "home-outside-roots", "{refused}");
        }
        let e = homes.confine("/x/../../../etc", &partners).unwrap_err();
        assert!(e.to_string().contains("/etc (given as"), "{e}");
        // Configured roots replace the default, templates included.
        let only = HomeRoots::configured([PathBuf::from("/srv/ldap/"), PathBuf::from("/")]);
        assert!(only.confine("/srv/ldap/lara", &partners).is_ok());
        assert!(only.confine("/srv/partners/hal", &partners).is_err());
        assert!(only.confine("/etc", &partners).is_err());
    }
}
