//! The values of a typed `[[service]]`: ranges, the files it names, the certificate its
//! type needs. Reached only after the section was typed, so every check here knows its type;
//! it never opens a file or a socket, it only asks whether a file exists.

use toml::Spanned;
use wharf_ssh::Profile;

use super::{
    Found, FtpKeys, FtpTls, HttpKeys, LoginKeys, ManagerKeys, Service, ServiceKind, SshKeys,
    parse_addresses,
};
use crate::config::Loaded;

impl Service {
    /// Checks the values of a typed section (ranges, files, the certificate it needs).
    pub fn validate(&self, loaded: &Loaded, issue: &mut dyn FnMut(Found)) {
        let key = |k: &str| format!("service[{}].{k}", self.index);
        let has_certificate = loaded.config.tls.is_some();
        let mut at_least_one = |value: &Spanned<u64>, field: &str| {
            if *value.get_ref() == 0 {
                issue((value.span(), key(field), "must be at least 1".into()));
            }
        };
        if let Some(size) = &self.max_file_size {
            at_least_one(size, "max_file_size");
        }
        for (field, value) in [
            ("max_connections", &self.max_connections),
            ("max_per_ip", &self.max_per_ip),
        ] {
            if *value.get_ref() == 0 {
                issue((value.span(), key(field), "must be at least 1".into()));
            }
        }
        if let Err(e) = parse_addresses(self.address.get_ref(), 1) {
            issue((self.address.span(), key("address"), e));
        }
        self.validate_proxy(&key, issue);
        if let Some(port) = &self.port
            && *port.get_ref() == 0
        {
            issue((
                port.span(),
                key("port"),
                "port 0 is not allowed; choose a port such as 2222".into(),
            ));
        }
        match &self.kind {
            ServiceKind::Ssh { login, ssh } => {
                validate_login(login, &key, issue);
                validate_ssh(ssh, loaded, &key, issue);
            }
            ServiceKind::Ftp { login, ftp, tls } => {
                validate_login(login, &key, issue);
                validate_ftp(ftp, &key, issue);
                if *tls.get_ref() != FtpTls::Off && !has_certificate {
                    issue((
                        self.type_span.clone(),
                        key("tls"),
                        "FTPS needs a certificate: add a [tls] section, or set tls = \"off\" for plain FTP".into(),
                    ));
                }
            }
            ServiceKind::FtpsImplicit { login, ftp } => {
                validate_login(login, &key, issue);
                validate_ftp(ftp, &key, issue);
                if !has_certificate {
                    issue((
                        self.type_span.clone(),
                        key("type"),
                        "implicit FTPS needs a certificate: add a [tls] section".into(),
                    ));
                }
            }
            ServiceKind::Http { http, .. } => validate_http(http, &key, issue),
            ServiceKind::Https { http } => {
                validate_http(http, &key, issue);
                if !has_certificate {
                    issue((
                        self.type_span.clone(),
                        key("type"),
                        "HTTPS needs a certificate: add a [tls] section".into(),
                    ));
                }
            }
            ServiceKind::Manager { manager } => {
                validate_manager(manager, &key, issue);
                if !has_certificate {
                    issue((
                        self.type_span.clone(),
                        key("type"),
                        "the Manager is served over HTTPS only and needs a certificate: add a [tls] section".into(),
                    ));
                }
            }
        }
    }
}

impl Service {
    /// `proxy_protocol` needs its balancers, and `proxy_from` means nothing without it.
    fn validate_proxy(&self, key: &dyn Fn(&str) -> String, issue: &mut dyn FnMut(Found)) {
        let on = *self.proxy_protocol.get_ref();
        match &self.proxy_from {
            None if on => issue((
                self.proxy_protocol.span(),
                key("proxy_protocol"),
                "list the load balancers allowed to send the PROXY header, such as proxy_from = [\"10.0.0.5\", \"10.1.0.0/24\"]; any other peer is refused".into(),
            )),
            None => {}
            Some(from) if !on => issue((
                from.span(),
                key("proxy_from"),
                "proxy_from is used only with proxy_protocol = true; add that or remove proxy_from".into(),
            )),
            Some(from) if from.get_ref().is_empty() => issue((
                from.span(),
                key("proxy_from"),
                "list at least one load balancer address or network, such as [\"10.0.0.5\"]".into(),
            )),
            Some(from) => {
                for entry in from.get_ref() {
                    if let Err(e) = entry.parse::<wharf_types::IpNetwork>() {
                        issue((from.span(), key("proxy_from"), e.to_string()));
                    }
                }
            }
        }
    }
}

fn validate_login(login: &LoginKeys, key: &dyn Fn(&str) -> String, issue: &mut dyn FnMut(Found)) {
    for (field, value) in [
        ("idle_timeout", &login.idle_timeout),
        ("login_grace_time", &login.login_grace_time),
    ] {
        if *value.get_ref() == 0 {
            issue((value.span(), key(field), "must be at least 1 second".into()));
        }
    }
    if let Some(tries) = &login.max_auth_tries
        && *tries.get_ref() == 0
    {
        issue((
            tries.span(),
            key("max_auth_tries"),
            "must be at least 1".into(),
        ));
    }
}

fn validate_ftp(ftp: &FtpKeys, key: &dyn Fn(&str) -> String, issue: &mut dyn FnMut(Found)) {
    if let Some(ports) = &ftp.passive_ports {
        match ports.get_ref().as_slice() {
            [first, last] if first <= last && *first >= 1024 => {}
            _ => issue((
                ports.span(),
                key("passive_ports"),
                "give [first, last] with 1024 <= first <= last, such as [50000, 50100]".into(),
            )),
        }
    }
    if *ftp.data_timeout.get_ref() == 0 {
        issue((
            ftp.data_timeout.span(),
            key("data_timeout"),
            "must be at least 1 second".into(),
        ));
    }
    if let Some(address) = &ftp.passive_address
        && address.get_ref().parse::<std::net::Ipv4Addr>().is_err()
    {
        issue((
            address.span(),
            key("passive_address"),
            format!(
                "{:?} is not an IPv4 address; PASV announces IPv4 only (EPSV needs no address)",
                address.get_ref()
            ),
        ));
    }
}

fn validate_http(http: &HttpKeys, key: &dyn Fn(&str) -> String, issue: &mut dyn FnMut(Found)) {
    for (field, value) in [
        ("session_timeout", &http.session_timeout),
        ("session_lifetime", &http.session_lifetime),
        ("recheck_after", &http.recheck_after),
        ("header_timeout", &http.header_timeout),
        ("body_timeout", &http.body_timeout),
        ("max_upload_size", &http.max_upload_size),
    ] {
        if *value.get_ref() == 0 {
            issue((value.span(), key(field), "must be at least 1".into()));
        }
    }
    if *http.recheck_after.get_ref() > 3600 {
        issue((
            http.recheck_after.span(),
            key("recheck_after"),
            "at most 3600 seconds: an LDAP or HTTP method's answer is not trusted longer".into(),
        ));
    }
}

fn validate_ssh(
    ssh: &SshKeys,
    loaded: &Loaded,
    key: &dyn Fn(&str) -> String,
    issue: &mut dyn FnMut(Found),
) {
    if ssh.host_keys.get_ref().is_empty() {
        issue((
            ssh.host_keys.span(),
            key("host_keys"),
            "an SSH service needs at least one host key file".into(),
        ));
    }
    for file in ssh.host_keys.get_ref() {
        if !loaded.resolve(file).exists() {
            issue((
                ssh.host_keys.span(),
                key("host_keys"),
                format!(
                    "host key {file:?} does not exist; generate one with `ssh-keygen -t ed25519 -N '' -f {file}`"
                ),
            ));
        }
    }
    if let Some(name) = &ssh.algorithms
        && Profile::parse(name.get_ref()).is_none()
    {
        issue((
            name.span(),
            key("algorithms"),
            format!(
                "{:?} is not a profile; use {}",
                name.get_ref(),
                Profile::NAMES
            ),
        ));
    }
    if let Err(e) = ssh.algorithms().validate() {
        let (span, field) = match e.what {
            "kex" => (ssh.kex.as_ref().map(Spanned::span), "kex"),
            "cipher" => (ssh.ciphers.as_ref().map(Spanned::span), "ciphers"),
            "mac" => (ssh.macs.as_ref().map(Spanned::span), "macs"),
            _ => (
                ssh.host_key_algorithms.as_ref().map(Spanned::span),
                "host_key_algorithms",
            ),
        };
        issue((span.unwrap_or(0..0), key(field), e.to_string()));
    }
}

fn validate_manager(
    manager: &ManagerKeys,
    key: &dyn Fn(&str) -> String,
    issue: &mut dyn FnMut(Found),
) {
    for (field, value) in [
        ("session_timeout", &manager.session_timeout),
        ("session_lifetime", &manager.session_lifetime),
        ("header_timeout", &manager.header_timeout),
    ] {
        if *value.get_ref() == 0 {
            issue((value.span(), key(field), "must be at least 1 second".into()));
        }
    }
    if let Some(list) = &manager.allow_from {
        if list.get_ref().is_empty() {
            issue((
                list.span(),
                key("allow_from"),
                "list at least one address or network, such as [\"10.0.0.0/8\", \"::1\"], or remove allow_from to open the Manager to every network".into(),
            ));
        }
        for entry in list.get_ref() {
            if let Err(e) = entry.parse::<wharf_types::IpNetwork>() {
                issue((list.span(), key("allow_from"), e.to_string()));
            }
        }
    }
}
