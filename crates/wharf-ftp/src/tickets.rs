//! FTPS session tickets: one ticket key per control connection (its "family"), so a ticket
//! names the control connection that issued it, and a data connection can tell whether the
//! session it resumes belongs to its own login.
//!
//! Why not one store per control connection and nothing else: Go's TLS client (rclone) keeps
//! one session per server for all of its control connections and offers on a data
//! connection whichever ticket it received last, from any of them. So a data connection
//! accepts a ticket of its own control connection, or of another control connection of the
//! same account from the same address: proof that the client holds the secrets of a TLS
//! session Wharf negotiated with that login. A third party on the passive port holds none.
//!
//! Tickets are AES-256-GCM under the family's key, never consumed: OpenSSL and GnuTLS
//! clients offer the control connection's one session for every data connection. A key
//! lives while its control connection does, and a short while after (a client's other
//! connections may still hold its tickets); then it is forgotten, and its tickets with it.
//!
//! A data connection is checked only after its handshake, so a ticket issued during that
//! handshake must not carry the family's trust yet: whoever made the handshake holds it,
//! also a stranger about to be refused, who could resume it on the account's next transfer.
//! Such a ticket names a random voucher, and is good only once the data connection that
//! received it passed the check and vouched for it; a connection resuming it before then
//! (Go's clients share tickets between parallel connections at once) waits for that
//! verdict. Family ids are random too, so a ticket (sent in the clear) tells nobody how
//! many connections the service has had.
//!
//! This module must never let a data connection use a session of another account or
//! address, and never keep an unbounded number of keys.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use rustls::server::ProducesTickets;
use tokio::sync::Notify;

/// How long the keys of a closed control connection still open its tickets.
const GRACE: Duration = Duration::from_secs(10 * 60);
/// Keys of closed control connections kept at most (the oldest go first).
const CLOSED_KEPT: usize = 4096;
/// Keys of closed control connections kept per address, so connections opened and closed
/// from one address cannot push out the keys another address's clients still use.
const CLOSED_KEPT_PER_PEER: usize = 64;
/// Lifetime announced with each ticket: the most TLS 1.3 allows (RFC 8446 §4.6.1). A GnuTLS
/// client (lftp) offers the control connection's first ticket for every data connection, so
/// it must outlive the control connection; the key's own life is the real bound.
const TICKET_LIFETIME: u32 = 7 * 24 * 60 * 60;
const ID_LEN: usize = 8;
const VOUCHER_LEN: usize = 8;
/// Ticket kinds, after the family id.
const CONTROL_TICKET: u8 = 0;
const DATA_TICKET: u8 = 1;
/// Vouched data tickets remembered per family (the newest; a client holds a few at most).
const VOUCHED_KEPT: usize = 64;
/// Tickets one data handshake may issue (rustls sends at most the configured count).
const ISSUED_PER_HANDSHAKE: usize = 8;

struct Family {
    key: Arc<LessSafeKey>,
    peer: IpAddr,
    /// The account logged in on the control connection (the last one, if several).
    account: Option<String>,
    /// When the control connection closed.
    closed: Option<Instant>,
    /// Vouchers of data tickets whose data connection passed the check.
    vouched: VecDeque<u64>,
    /// Vouchers of data tickets whose data connection is not checked yet.
    pending: Vec<u64>,
}

impl Family {
    /// Whether its tickets may still be resumed at `now`.
    fn usable(&self, now: Instant) -> bool {
        self.closed.is_none_or(|at| now.duration_since(at) < GRACE)
    }
}

#[derive(Default)]
struct Registry {
    families: HashMap<u64, Family>,
    closed: VecDeque<(u64, Instant)>,
}

impl Registry {
    fn prune(&mut self, now: Instant) {
        while let Some(&(id, at)) = self.closed.front() {
            if self.closed.len() <= CLOSED_KEPT && now.duration_since(at) < GRACE {
                break;
            }
            self.closed.pop_front();
            self.families.remove(&id);
        }
    }

    /// Forgets the oldest closed families of `peer` beyond [`CLOSED_KEPT_PER_PEER`].
    fn prune_peer(&mut self, peer: IpAddr) {
        let of_peer: Vec<usize> = self
            .closed
            .iter()
            .enumerate()
            .filter(|(_, (id, _))| self.families.get(id).is_some_and(|f| f.peer == peer))
            .map(|(i, _)| i)
            .collect();
        let excess = of_peer.len().saturating_sub(CLOSED_KEPT_PER_PEER);
        for &i in of_peer[..excess].iter().rev() {
            if let Some((id, _)) = self.closed.remove(i) {
                self.families.remove(&id);
            }
        }
    }

    /// A random id no family holds.
    fn new_id(&self) -> Option<u64> {
        for _ in 0..8 {
            let mut bytes = [0u8; ID_LEN];
            aws_lc_rs::rand::fill(&mut bytes).ok()?;
            let id = u64::from_be_bytes(bytes);
            if !self.families.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }
}

/// The ticket keys of one FTP service, one per control connection.
#[derive(Default)]
pub(crate) struct Families {
    registry: Mutex<Registry>,
    /// Woken when a control connection logs in or closes.
    changed: Notify,
}

/// Whether a data connection may use the session it resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Yes,
    No,
    /// Issued to a control connection of the same address that has not logged in yet.
    NotYet,
}

impl Families {
    /// A new family for a control connection from `peer`; closed when the handle drops.
    pub(crate) fn open(self: &Arc<Self>, peer: IpAddr) -> Option<FamilyHandle> {
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key).ok()?;
        let key = UnboundKey::new(&AES_256_GCM, &key).ok()?;
        let mut registry = self.registry.lock().ok()?;
        registry.prune(Instant::now());
        let id = registry.new_id()?;
        registry.families.insert(
            id,
            Family {
                key: Arc::new(LessSafeKey::new(key)),
                peer,
                account: None,
                closed: None,
                vouched: VecDeque::new(),
                pending: Vec::new(),
            },
        );
        Some(FamilyHandle {
            families: Arc::clone(self),
            id,
            data: Arc::default(),
        })
    }

    fn close(&self, id: u64) {
        if let Ok(mut registry) = self.registry.lock() {
            let now = Instant::now();
            let mut peer = None;
            if let Some(family) = registry.families.get_mut(&id) {
                family.closed = Some(now);
                peer = Some(family.peer);
            }
            registry.closed.push_back((id, now));
            registry.prune(now);
            if let Some(peer) = peer {
                registry.prune_peer(peer);
            }
        }
        self.changed.notify_waiters();
    }

    fn bind(&self, id: u64, account: Option<String>) {
        if let Ok(mut registry) = self.registry.lock()
            && let Some(family) = registry.families.get_mut(&id)
        {
            family.account = account;
        }
        self.changed.notify_waiters();
    }

    fn verdict(&self, own: u64, issuer: u64) -> Verdict {
        if issuer == own {
            return Verdict::Yes;
        }
        let Ok(registry) = self.registry.lock() else {
            return Verdict::No;
        };
        let (Some(me), Some(them)) = (registry.families.get(&own), registry.families.get(&issuer))
        else {
            return Verdict::No;
        };
        match (&me.account, &them.account) {
            _ if me.peer != them.peer || !them.usable(Instant::now()) => Verdict::No,
            (Some(mine), Some(theirs)) if mine == theirs => Verdict::Yes,
            (Some(_), None) if them.closed.is_none() => Verdict::NotYet,
            _ => Verdict::No,
        }
    }

    /// A ticket of family `id`: a control ticket, or with `voucher` a data ticket.
    fn encrypt(&self, id: u64, voucher: Option<u64>, plain: &[u8]) -> Option<Vec<u8>> {
        let key = Arc::clone(&self.registry.lock().ok()?.families.get(&id)?.key);
        let mut head = Vec::with_capacity(ID_LEN + 1 + VOUCHER_LEN);
        head.extend_from_slice(&id.to_be_bytes());
        match voucher {
            None => head.push(CONTROL_TICKET),
            Some(v) => {
                head.push(DATA_TICKET);
                head.extend_from_slice(&v.to_be_bytes());
            }
        }
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        let mut sealed = plain.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(head.as_slice()),
            &mut sealed,
        )
        .ok()?;
        let mut ticket = head;
        ticket.extend_from_slice(&nonce);
        ticket.extend_from_slice(&sealed);
        Some(ticket)
    }

    /// The session in `ticket` and the family that issued it, when a handshake of family
    /// `own` may resume it: a session of the same address, and for a data ticket one whose
    /// data connection vouched for it. Whether a data connection may then be used is
    /// decided after the handshake ([`FamilyHandle::resumed_own_login`]): the issuing
    /// control connection may still be logging in.
    fn decrypt(&self, own: u64, ticket: &[u8]) -> Option<(u64, Option<u64>, Vec<u8>)> {
        let (id, rest) = ticket.split_first_chunk::<ID_LEN>()?;
        let (kind, rest) = rest.split_first()?;
        let (voucher, rest) = match *kind {
            CONTROL_TICKET => (None, rest),
            DATA_TICKET => {
                let (v, rest) = rest.split_first_chunk::<VOUCHER_LEN>()?;
                (Some(u64::from_be_bytes(*v)), rest)
            }
            _ => return None,
        };
        let head = &ticket[..ticket.len() - rest.len()];
        let (nonce, sealed) = rest.split_first_chunk::<NONCE_LEN>()?;
        let id = u64::from_be_bytes(*id);
        let key = {
            let registry = self.registry.lock().ok()?;
            let issuer = registry.families.get(&id)?;
            let me = registry.families.get(&own)?;
            if id != own && (issuer.peer != me.peer || !issuer.usable(Instant::now())) {
                return None;
            }
            if voucher.is_some_and(|v| !issuer.vouched.contains(&v) && !issuer.pending.contains(&v))
            {
                return None;
            }
            Arc::clone(&issuer.key)
        };
        let mut buf = sealed.to_vec();
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(head),
                &mut buf,
            )
            .ok()?;
        Some((id, voucher, plain.to_vec()))
    }

    /// Notes a data ticket's voucher as issued by family `id` and not yet checked; false
    /// when too many are.
    fn issue(&self, id: u64, voucher: u64) -> bool {
        let Ok(mut registry) = self.registry.lock() else {
            return false;
        };
        match registry.families.get_mut(&id) {
            Some(family) if family.pending.len() < VOUCHED_KEPT => {
                family.pending.push(voucher);
                true
            }
            _ => false,
        }
    }

    /// The data connection that received `vouchers` (issued by family `id`) passed its
    /// check (`passed`), or never will: its tickets become good, or never will.
    fn settle(&self, id: u64, vouchers: &[u64], passed: bool) {
        if vouchers.is_empty() {
            return;
        }
        if let Ok(mut registry) = self.registry.lock()
            && let Some(family) = registry.families.get_mut(&id)
        {
            family.pending.retain(|v| !vouchers.contains(v));
            if passed {
                family.vouched.extend(vouchers.iter().copied());
                while family.vouched.len() > VOUCHED_KEPT {
                    family.vouched.pop_front();
                }
            }
        }
        self.changed.notify_waiters();
    }

    /// Whether the data ticket `voucher` of family `id` is good: `Some(true)` vouched,
    /// `Some(false)` never will be, `None` not known yet.
    fn voucher_state(&self, id: u64, voucher: u64) -> Option<bool> {
        let registry = self.registry.lock().ok()?;
        let Some(family) = registry.families.get(&id) else {
            return Some(false);
        };
        if family.vouched.contains(&voucher) {
            Some(true)
        } else if family.pending.contains(&voucher) {
            None
        } else {
            Some(false)
        }
    }
}

/// What one data handshake did with tickets.
#[derive(Default)]
struct DataHandshake {
    /// The family whose ticket it resumed.
    resumed: Option<u64>,
    /// The voucher of the data ticket it resumed, if it was one.
    voucher: Option<u64>,
    /// Vouchers of the tickets it issued.
    issued: Vec<u64>,
}

/// A control connection's family; its key is kept for [`GRACE`] after this drops.
pub(crate) struct FamilyHandle {
    families: Arc<Families>,
    id: u64,
    /// The current data handshake. A control connection runs one at a time.
    data: Arc<Mutex<DataHandshake>>,
}

impl FamilyHandle {
    /// The account now logged in on the control connection (`None` after a logout).
    pub(crate) fn bind(&self, account: Option<String>) {
        self.families.bind(self.id, account);
    }

    /// The ticket producer for the control connection's handshake.
    pub(crate) fn control_tickets(&self) -> Arc<dyn ProducesTickets> {
        Arc::new(FamilyTickets {
            families: Arc::clone(&self.families),
            own: self.id,
            data: None,
        })
    }

    /// The ticket producer for data connections' handshakes: it notes whose ticket was
    /// resumed (see [`Self::resumed_own_login`]), and issues data tickets that open only
    /// once that check passed.
    pub(crate) fn data_tickets(&self) -> Arc<dyn ProducesTickets> {
        Arc::new(FamilyTickets {
            families: Arc::clone(&self.families),
            own: self.id,
            data: Some(Arc::clone(&self.data)),
        })
    }

    /// Call before each data handshake.
    pub(crate) fn forget_resumed(&self) {
        let earlier = self
            .data
            .lock()
            .map(|mut slot| std::mem::take(&mut *slot))
            .unwrap_or_default();
        // A handshake that was never checked: its tickets never become good.
        self.families.settle(self.id, &earlier.issued, false);
    }

    /// After a data handshake that resumed: whether the session resumed belongs to this
    /// login: issued to this control connection (a ticket, or a session ID of its own
    /// store), or to another control connection of the same account and address. One that
    /// is still logging in is waited for, up to `wait`. `Err` says why not. When it does,
    /// the tickets the handshake issued are vouched for.
    pub(crate) async fn resumed_own_login(&self, wait: Duration) -> Result<(), &'static str> {
        let handshake = self
            .data
            .lock()
            .map(|mut slot| std::mem::take(&mut *slot))
            .unwrap_or_default();
        let deadline = tokio::time::Instant::now() + wait;
        let mut verdict = self.wait_for_verdict(handshake.resumed, deadline).await;
        if verdict.is_ok()
            && let (Some(issuer), Some(voucher)) = (handshake.resumed, handshake.voucher)
        {
            verdict = self.wait_for_voucher(issuer, voucher, deadline).await;
        }
        self.families
            .settle(self.id, &handshake.issued, verdict.is_ok());
        verdict
    }

    /// Waits until the data connection that received the data ticket `voucher` is checked.
    async fn wait_for_voucher(
        &self,
        issuer: u64,
        voucher: u64,
        deadline: tokio::time::Instant,
    ) -> Result<(), &'static str> {
        loop {
            let changed = self.families.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.families.voucher_state(issuer, voucher) {
                Some(true) => return Ok(()),
                Some(false) => return Err("it resumes a ticket of a refused data connection"),
                None => {
                    if tokio::time::timeout_at(deadline, changed).await.is_err() {
                        return Err("it resumes a ticket of a data connection not yet checked");
                    }
                }
            }
        }
    }

    async fn wait_for_verdict(
        &self,
        issuer: Option<u64>,
        deadline: tokio::time::Instant,
    ) -> Result<(), &'static str> {
        let Some(issuer) = issuer else {
            // Resumed by a session ID, which only this control connection's store holds.
            return Ok(());
        };
        loop {
            let changed = self.families.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.families.verdict(self.id, issuer) {
                Verdict::Yes => return Ok(()),
                Verdict::No => return Err("it resumes a TLS session of another login"),
                Verdict::NotYet => {
                    if tokio::time::timeout_at(deadline, changed).await.is_err() {
                        return Err("it resumes a TLS session of a connection that did not log in");
                    }
                }
            }
        }
    }
}

impl Drop for FamilyHandle {
    fn drop(&mut self) {
        self.families.close(self.id);
    }
}

struct FamilyTickets {
    families: Arc<Families>,
    own: u64,
    /// For a data connection: where its handshake notes what it resumed and issued.
    data: Option<Arc<Mutex<DataHandshake>>>,
}

impl std::fmt::Debug for FamilyTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FamilyTickets")
            .field("own", &self.own)
            .finish()
    }
}

impl ProducesTickets for FamilyTickets {
    fn enabled(&self) -> bool {
        true
    }
    fn lifetime(&self) -> u32 {
        TICKET_LIFETIME
    }
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let Some(data) = &self.data else {
            return self.families.encrypt(self.own, None, plain);
        };
        let mut bytes = [0u8; VOUCHER_LEN];
        aws_lc_rs::rand::fill(&mut bytes).ok()?;
        let voucher = u64::from_be_bytes(bytes);
        {
            let mut handshake = data.lock().ok()?;
            if handshake.issued.len() >= ISSUED_PER_HANDSHAKE
                || !self.families.issue(self.own, voucher)
            {
                return None;
            }
            handshake.issued.push(voucher);
        }
        self.families.encrypt(self.own, Some(voucher), plain)
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let (issuer, voucher, plain) = self.families.decrypt(self.own, cipher)?;
        if let Some(data) = &self.data
            && let Ok(mut handshake) = data.lock()
        {
            handshake.resumed = Some(issuer);
            handshake.voucher = voucher;
        }
        Some(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn families() -> Arc<Families> {
        Arc::new(Families::default())
    }

    const WAIT: Duration = Duration::from_millis(200);

    /// Resumes `ticket` on a data connection of `f`: whether it may be used.
    async fn data_resume(f: &FamilyHandle, ticket: &[u8]) -> Option<bool> {
        f.forget_resumed();
        f.data_tickets().decrypt(ticket)?;
        Some(f.resumed_own_login(WAIT).await.is_ok())
    }

    #[tokio::test]
    async fn own_tickets_resume_again_and_again() {
        let all = families();
        let a = all.open(ip(1)).expect("family");
        a.bind(Some("alice".into()));
        let ticket = a.control_tickets().encrypt(b"session").expect("ticket");
        for _ in 0..100 {
            assert_eq!(
                a.data_tickets().decrypt(&ticket).as_deref(),
                Some(&b"session"[..])
            );
            assert_eq!(data_resume(&a, &ticket).await, Some(true));
        }
    }

    #[tokio::test]
    async fn data_connections_accept_only_the_same_login_and_address() {
        let all = families();
        let a = all.open(ip(1)).expect("family");
        let b = all.open(ip(1)).expect("family");
        let other_account = all.open(ip(1)).expect("family");
        let other_address = all.open(ip(2)).expect("family");
        for (f, who) in [(&a, "alice"), (&b, "alice"), (&other_account, "bob")] {
            f.bind(Some(who.into()));
        }
        other_address.bind(Some("alice".into()));
        let from_b = b.control_tickets().encrypt(b"b").expect("ticket");
        assert_eq!(data_resume(&a, &from_b).await, Some(true));
        assert_eq!(data_resume(&other_account, &from_b).await, Some(false));
        // Another address cannot even decrypt it.
        assert_eq!(data_resume(&other_address, &from_b).await, None);
        assert!(other_address.control_tickets().decrypt(&from_b).is_none());
        let bobs = other_account
            .control_tickets()
            .encrypt(b"x")
            .expect("ticket");
        assert_eq!(data_resume(&a, &bobs).await, Some(false));
    }

    #[tokio::test]
    async fn a_ticket_of_a_connection_still_logging_in_waits_for_its_login() {
        let all = families();
        let a = all.open(ip(1)).expect("family");
        a.bind(Some("alice".into()));
        let pending = all.open(ip(1)).expect("family");
        let ticket = pending.control_tickets().encrypt(b"p").expect("ticket");
        // Never logs in: refused when the wait is over.
        assert_eq!(data_resume(&a, &ticket).await, Some(false));
        // Logs in as alice while the data connection waits.
        a.forget_resumed();
        a.data_tickets().decrypt(&ticket).expect("decrypts");
        let login = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            pending.bind(Some("alice".into()));
        };
        let (ok, ()) = tokio::join!(a.resumed_own_login(Duration::from_secs(5)), login);
        assert_eq!(ok, Ok(()));
        // One that closes without logging in is refused at once.
        let quitter = all.open(ip(1)).expect("family");
        let ticket = quitter.control_tickets().encrypt(b"q").expect("ticket");
        drop(quitter);
        assert_eq!(data_resume(&a, &ticket).await, Some(false));
    }

    #[tokio::test]
    async fn tampered_and_forgotten_tickets_are_refused() {
        let all = families();
        let a = all.open(ip(1)).expect("family");
        a.bind(Some("alice".into()));
        let mut ticket = a.control_tickets().encrypt(b"session").expect("ticket");
        let last = ticket.len() - 1;
        ticket[last] ^= 1;
        assert!(a.data_tickets().decrypt(&ticket).is_none());
        assert!(a.data_tickets().decrypt(b"short").is_none());
        let b = all.open(ip(1)).expect("family");
        b.bind(Some("alice".into()));
        let from_b = b.control_tickets().encrypt(b"b").expect("ticket");
        drop(b);
        // Kept for the grace period, and bounded in number.
        assert_eq!(data_resume(&a, &from_b).await, Some(true));
        for _ in 0..CLOSED_KEPT_PER_PEER + 10 {
            drop(all.open(ip(1)).expect("family"));
        }
        assert_eq!(data_resume(&a, &from_b).await, None);
        for last in 2..=200 {
            for _ in 0..30 {
                drop(all.open(ip(last)).expect("family"));
            }
        }
        let registry = all.registry.lock().expect("lock");
        assert!(registry.families.len() <= CLOSED_KEPT + 1);
    }

    #[tokio::test]
    async fn data_tickets_open_only_once_their_connection_passed_and_ids_tell_nothing() {
        let all = families();
        let a = all.open(ip(1)).expect("family");
        a.bind(Some("alice".into()));
        let own = a.control_tickets().encrypt(b"session").expect("ticket");
        // A stranger's full handshake on alice's data port is refused: its ticket never
        // opens.
        a.forget_resumed();
        let strangers = a.data_tickets().encrypt(b"stolen").expect("ticket");
        a.forget_resumed();
        assert!(a.data_tickets().decrypt(&strangers).is_none());
        // Alice's resumed data connection: its new ticket waits for that connection's check
        // and is good once it passed.
        a.forget_resumed();
        let data = a.data_tickets();
        assert!(data.decrypt(&own).is_some());
        let fresh = data.encrypt(b"next").expect("ticket");
        let b = all.open(ip(1)).expect("family");
        b.bind(Some("alice".into()));
        b.forget_resumed();
        assert!(b.data_tickets().decrypt(&fresh).is_some());
        let (theirs, mine) = tokio::join!(b.resumed_own_login(WAIT * 10), async {
            tokio::time::sleep(WAIT / 2).await;
            a.resumed_own_login(WAIT).await
        });
        assert_eq!((theirs, mine), (Ok(()), Ok(())));
        assert_eq!(data_resume(&a, &fresh).await, Some(true));
        assert!(a.data_tickets().decrypt(&strangers).is_none());
        // A data ticket whose voucher is changed does not open.
        let mut forged = fresh.clone();
        forged[ID_LEN + 1] ^= 1;
        assert!(a.data_tickets().decrypt(&forged).is_none());
        // One that waits for a connection that is then refused is refused too.
        a.forget_resumed();
        let data = a.data_tickets();
        assert!(data.decrypt(&own).is_some());
        let doomed = data.encrypt(b"x").expect("ticket");
        b.forget_resumed();
        assert!(b.data_tickets().decrypt(&doomed).is_some());
        let (theirs, ()) = tokio::join!(b.resumed_own_login(WAIT * 10), async {
            a.forget_resumed();
        });
        assert!(theirs.is_err());
        let ids: Vec<u64> = (0..4)
            .map(|_| {
                let f = all.open(ip(1)).expect("family");
                let ticket = f.control_tickets().encrypt(b"s").expect("ticket");
                u64::from_be_bytes(ticket[..ID_LEN].try_into().expect("id"))
            })
            .collect();
        assert!(
            ids.windows(2).all(|w| w[1] != w[0].wrapping_add(1)),
            "{ids:?}"
        );
    }

    #[tokio::test]
    async fn churn_from_one_address_keeps_another_addresses_keys() {
        let all = families();
        let a = all.open(ip(1)).expect("family");
        a.bind(Some("alice".into()));
        let b = all.open(ip(1)).expect("family");
        b.bind(Some("alice".into()));
        let from_b = b.control_tickets().encrypt(b"b").expect("ticket");
        drop(b);
        for _ in 0..CLOSED_KEPT_PER_PEER * 4 {
            drop(all.open(ip(9)).expect("family"));
        }
        assert_eq!(data_resume(&a, &from_b).await, Some(true));
    }
}
