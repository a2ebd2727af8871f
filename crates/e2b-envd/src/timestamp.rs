//! `google.protobuf.Timestamp`, with the proto3 JSON form E2B's SDKs expect.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::{Serialize, Serializer};

/// A point in time: seconds and nanoseconds since the Unix epoch, in UTC.
///
/// In JSON it is an RFC 3339 string ending in `Z`, with 0, 3, 6 or 9 fractional digits, as
/// the proto3 JSON mapping requires (pbjson's own type writes `+00:00`).
///
/// ```
/// use e2b_envd::Timestamp;
///
/// let t = Timestamp { seconds: 1_735_787_045, nanos: 500_000_000 };
/// assert_eq!(serde_json::to_string(&t).unwrap(), r#""2025-01-02T03:04:05.500Z""#);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message)]
#[prost(skip_debug)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds within the second, 0 to 999,999,999.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    /// As a chrono time; `None` when out of chrono's range or `nanos` is invalid.
    pub fn to_datetime(self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.seconds, u32::try_from(self.nanos).ok()?)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Self {
        match time.duration_since(UNIX_EPOCH) {
            Ok(since) => Timestamp {
                seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
                nanos: since.subsec_nanos() as i32,
            },
            Err(before) => {
                let before = before.duration();
                let (mut seconds, mut nanos) = (
                    -i64::try_from(before.as_secs()).unwrap_or(i64::MAX),
                    -(before.subsec_nanos() as i32),
                );
                if nanos < 0 {
                    seconds -= 1;
                    nanos += 1_000_000_000;
                }
                Timestamp { seconds, nanos }
            }
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        let nanos = Duration::from_nanos(t.nanos.clamp(0, 999_999_999) as u64);
        if t.seconds >= 0 {
            UNIX_EPOCH + Duration::from_secs(t.seconds as u64) + nanos
        } else {
            UNIX_EPOCH - Duration::from_secs(t.seconds.unsigned_abs()) + nanos
        }
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(time: DateTime<Utc>) -> Self {
        Timestamp {
            seconds: time.timestamp(),
            nanos: time.timestamp_subsec_nanos() as i32,
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_datetime() {
            Some(time) => write!(
                f,
                "Timestamp({})",
                time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            ),
            None => write!(f, "Timestamp({}s, {}ns)", self.seconds, self.nanos),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let time = self.to_datetime().ok_or_else(|| {
            serde::ser::Error::custom(format!(
                "timestamp {}s {}ns is out of range",
                self.seconds, self.nanos
            ))
        })?;
        // AutoSi picks 0, 3, 6 or 9 fractional digits; `true` writes `Z`.
        serializer.serialize_str(&time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Rfc3339;
        impl Visitor<'_> for Rfc3339 {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Timestamp, E> {
                DateTime::parse_from_rfc3339(text)
                    .map(|t| Timestamp::from(t.with_timezone(&Utc)))
                    .map_err(|e| E::custom(format!("invalid timestamp {text:?}: {e}")))
            }
        }
        deserializer.deserialize_str(Rfc3339)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_uses_z_and_proto3_precision() {
        let cases = [
            (
                Timestamp {
                    seconds: 0,
                    nanos: 0,
                },
                "1970-01-01T00:00:00Z",
            ),
            (
                Timestamp {
                    seconds: 1,
                    nanos: 10_000_000,
                },
                "1970-01-01T00:00:01.010Z",
            ),
            (
                Timestamp {
                    seconds: 1,
                    nanos: 1_000,
                },
                "1970-01-01T00:00:01.000001Z",
            ),
            (
                Timestamp {
                    seconds: 1,
                    nanos: 1,
                },
                "1970-01-01T00:00:01.000000001Z",
            ),
        ];
        for (t, text) in cases {
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{text}\""));
            assert_eq!(
                serde_json::from_str::<Timestamp>(&format!("\"{text}\"")).unwrap(),
                t
            );
        }
        let t: Timestamp = serde_json::from_str("\"1970-01-01T01:00:00+01:00\"").unwrap();
        assert_eq!(
            t,
            Timestamp {
                seconds: 0,
                nanos: 0
            }
        );
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    }

    #[test]
    fn system_time_round_trips() {
        let now = SystemTime::now();
        assert_eq!(SystemTime::from(Timestamp::from(now)), now);
        let before = UNIX_EPOCH - Duration::from_millis(1500);
        let t = Timestamp::from(before);
        assert_eq!((t.seconds, t.nanos), (-2, 500_000_000));
        assert_eq!(SystemTime::from(t), before);
    }
}
