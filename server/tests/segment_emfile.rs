//! Opening a new log segment waits out a process that is out of file
//! descriptors for a moment (a burst of connections accepted and refused at
//! once holds some for an instant), instead of failing the log, which would
//! refuse every change until a restart. Its own test binary: it lowers the
//! process's open-files limit and fills the table.

use std::fs::File;
use std::time::Duration;

use hongbao_server::wal::segment::{list_segments, SegmentWriter};
use hongbao_server::wal::Record;

#[test]
fn a_segment_opened_while_out_of_descriptors_waits_for_one() {
    let dir = std::env::temp_dir().join(format!("hongbao-segment-emfile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let inside = dir.clone();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            // The executor has its rings; now take every descriptor left.
            let limit = libc::rlimit { rlim_cur: 256, rlim_max: 256 };
            #[allow(unsafe_code)] // reason: setrlimit has no safe wrapper here
            // SAFETY: lowers this test process's own soft and hard limit.
            let lowered = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
            assert_eq!(lowered, 0, "{}", std::io::Error::last_os_error());
            let mut held = Vec::new();
            loop {
                match File::open("/dev/null") {
                    Ok(file) => held.push(file),
                    Err(e) => {
                        assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                        break;
                    }
                }
            }
            // A moment later the burst is over: a few descriptors come back.
            let freed = held.split_off(held.len() - 4);
            let release = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                drop(freed);
            });
            let mut writer = SegmentWriter::create(&inside, 1).await.expect("waits for a descriptor");
            writer.append(&[Record::open(1, 1, 1, 1, 1)]).await.unwrap();
            release.join().unwrap();
            assert_eq!(list_segments(&inside).unwrap().len(), 1);
            drop(held);
        })
        .unwrap()
        .join()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
