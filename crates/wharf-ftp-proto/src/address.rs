//! Data-connection addresses: PORT/PASV (RFC 959) and EPRT/EPSV (RFC 2428).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

/// A malformed address argument.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed address: {0}")]
pub struct AddressError(pub &'static str);

/// Parses PORT's `h1,h2,h3,h4,p1,p2`.
pub fn parse_port(arg: &str) -> Result<SocketAddrV4, AddressError> {
    let mut bytes = [0u8; 6];
    let mut parts = arg.trim().split(',');
    for slot in &mut bytes {
        let part = parts.next().ok_or(AddressError("PORT needs six numbers"))?;
        *slot = part
            .trim()
            .parse()
            .map_err(|_| AddressError("PORT numbers are 0-255"))?;
    }
    if parts.next().is_some() {
        return Err(AddressError("PORT needs six numbers"));
    }
    let ip = Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]);
    let port = u16::from(bytes[4]) << 8 | u16::from(bytes[5]);
    Ok(SocketAddrV4::new(ip, port))
}

/// Parses EPRT's `|proto|address|port|` (any delimiter character from 33 to 126).
pub fn parse_eprt(arg: &str) -> Result<SocketAddr, AddressError> {
    let arg = arg.trim();
    let delim = arg
        .chars()
        .next()
        .ok_or(AddressError("EPRT needs an argument"))?;
    if !(33..=126).contains(&(delim as u32)) || delim.is_ascii_alphanumeric() {
        return Err(AddressError(
            "EPRT delimiter must be a printable non-alphanumeric character",
        ));
    }
    let fields: Vec<&str> = arg.split(delim).collect();
    let [empty, proto, address, port, end] = fields.as_slice() else {
        return Err(AddressError("EPRT needs |proto|address|port|"));
    };
    if !empty.is_empty() || !end.is_empty() {
        return Err(AddressError("EPRT needs |proto|address|port|"));
    }
    let ip: IpAddr = match *proto {
        "1" => IpAddr::V4(
            address
                .parse()
                .map_err(|_| AddressError("EPRT address is not IPv4"))?,
        ),
        "2" => IpAddr::V6(
            address
                .parse()
                .map_err(|_| AddressError("EPRT address is not IPv6"))?,
        ),
        _ => return Err(AddressError("EPRT protocol must be 1 (IPv4) or 2 (IPv6)")),
    };
    let port: u16 = port
        .parse()
        .map_err(|_| AddressError("EPRT port must be 1-65535"))?;
    if port == 0 {
        return Err(AddressError("EPRT port must be 1-65535"));
    }
    Ok(SocketAddr::new(ip, port))
}

/// The text of a 227 reply for a passive listener at `addr`.
pub fn format_pasv(addr: SocketAddrV4) -> String {
    let [a, b, c, d] = addr.ip().octets();
    let port = addr.port();
    format!(
        "Entering Passive Mode ({a},{b},{c},{d},{},{}).",
        port >> 8,
        port & 0xff
    )
}

/// The text of a 229 reply for a passive listener on `port`.
pub fn format_epsv(port: u16) -> String {
    format!("Entering Extended Passive Mode (|||{port}|)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_and_pasv_round_trip() {
        let addr = parse_port("127,0,0,1,195,80").unwrap();
        assert_eq!(addr, "127.0.0.1:50000".parse().unwrap());
        assert_eq!(
            format_pasv(addr),
            "Entering Passive Mode (127,0,0,1,195,80)."
        );
        for bad in [
            "127,0,0,1,195",
            "127,0,0,1,195,80,1",
            "256,0,0,1,1,1",
            "a,b,c,d,e,f",
            "",
        ] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn eprt() {
        assert_eq!(
            parse_eprt("|1|132.235.1.2|6275|").unwrap(),
            "132.235.1.2:6275".parse().unwrap()
        );
        assert_eq!(
            parse_eprt("|2|::1|5282|").unwrap(),
            "[::1]:5282".parse().unwrap()
        );
        assert_eq!(
            parse_eprt("!2!::1!5282!").unwrap(),
            "[::1]:5282".parse().unwrap()
        );
        for bad in [
            "|3|::1|1|",
            "|1|::1|1|",
            "|2|::1|0|",
            "|2|::1|70000|",
            "|1|1.2.3.4|5",
            "a1a1.2.3.4a5a",
            "",
        ] {
            assert!(parse_eprt(bad).is_err(), "{bad}");
        }
        assert_eq!(
            format_epsv(50000),
            "Entering Extended Passive Mode (|||50000|)"
        );
    }
}
