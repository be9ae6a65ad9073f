//! Uploads committed under unique names: no upload of the same name replaces another.

use std::sync::Arc;

use wharf_core::{
    Account, Event, EventBus, Rule, RuleSet, Session, SessionInfo, UploadMode, UploadNaming,
    WriteMode,
};
use wharf_types::{AccountName, Protocol, VirtualPath};

struct DropFolder;

impl UploadNaming for DropFolder {
    fn unique_name(&self, finished: &Event) -> bool {
        finished
            .path
            .as_deref()
            .is_some_and(|p| p.starts_with("/drop/"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_to_a_drop_folder_never_replace_each_other() {
    let top = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(top.path().join("drop")).unwrap();
    let account = Account {
        name: AccountName::new("lara").unwrap(),
        home: top.path().to_path_buf(),
        groups: Vec::new(),
        create_home: false,
        rules: RuleSet::compile(&[Rule::allow_all()]).unwrap(),
        protocols: Vec::new(),
        upload_mode: UploadMode::Atomic,
        max_file_size: None,
    };
    let (events, mut trail) = EventBus::new();
    events.set_upload_naming(Some(Arc::new(DropFolder)));
    let info = SessionInfo {
        id: "s1".into(),
        service: "test".into(),
        protocol: Protocol::Sftp,
        remote: None,
        max_file_size: None,
        cut: Default::default(),
    };
    let session = Session::open(Arc::new(account), info, events)
        .await
        .unwrap();
    let path = VirtualPath::parse("/drop/dup.txt").unwrap();
    for body in [&b"one"[..], b"one", b"two"] {
        let upload = session
            .open_upload(&path, WriteMode::Create, None)
            .await
            .unwrap();
        upload.write_at(0, body.to_vec()).await.unwrap();
        upload.commit().await.unwrap();
    }
    let outside = VirtualPath::parse("/kept.txt").unwrap();
    let upload = session
        .open_upload(&outside, WriteMode::Create, None)
        .await
        .unwrap();
    upload.write_at(0, b"kept".to_vec()).await.unwrap();
    upload.commit().await.unwrap();

    let mut stored: Vec<(String, Vec<u8>)> = std::fs::read_dir(top.path().join("drop"))
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    stored.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert!(
        stored
            .iter()
            .all(|(name, _)| name.ends_with("-dup.txt") && name.len() == 44)
    );
    assert_eq!(std::fs::read(top.path().join("kept.txt")).unwrap(), b"kept");

    drop(session);
    let mut finished = Vec::new();
    while let Ok(event) = trail.try_recv() {
        if event.kind == wharf_core::EventKind::UploadFinished {
            finished.push(event);
        }
    }
    assert_eq!(finished.len(), 4);
    for event in &finished[..3] {
        let path = event.path.clone().unwrap();
        let name = path.strip_prefix("/drop/").unwrap();
        let bytes = std::fs::read(top.path().join("drop").join(name)).unwrap();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(event.sha256.as_deref(), Some(hex.as_str()));
        assert_eq!(
            event.attrs.get("uploaded_as").map(String::as_str),
            Some("/drop/dup.txt")
        );
        assert!(event.attrs.contains_key("inode"));
    }
    assert_eq!(finished[3].path.as_deref(), Some("/kept.txt"));
    assert!(!finished[3].attrs.contains_key("uploaded_as"));
}
