//! The error codes each response carries, counted per API key for the metrics endpoint
//! (`shardlog_request_errors_total`, Kafka's `ErrorsPerSec` by request and error). Every
//! response type says where its codes are ([`ErrorCodes`]); the dispatcher counts them as the
//! response leaves the handler, into this shard's own table (no sharing, no locks).

use std::cell::RefCell;
use std::collections::BTreeMap;

use kafka_protocol::messages::*;

/// A response's error codes, each one reported to `f` (NONE included; the counter skips it).
pub trait ErrorCodes {
    /// Reports every error code in the response.
    fn error_codes(&self, f: &mut dyn FnMut(i16));
}

/// Implements [`ErrorCodes`]: `top` are fields of the response itself, `list => inner` walks
/// a list and reports its items' codes as `inner` does.
macro_rules! codes {
    ($($ty:ty => |$r:ident, $f:ident| $body:expr;)*) => {
        $(impl ErrorCodes for $ty {
            fn error_codes(&self, $f: &mut dyn FnMut(i16)) {
                let $r = self;
                $body
            }
        })*
    };
}

codes! {
    ProduceResponse => |r, f| r.responses.iter().flat_map(|t| &t.partition_responses).for_each(|p| f(p.error_code));
    FetchResponse => |r, f| {
        f(r.error_code);
        r.responses.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
    };
    ListOffsetsResponse => |r, f| r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
    OffsetForLeaderEpochResponse => |r, f| r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
    MetadataResponse => |r, f| {
        f(r.error_code);
        for t in &r.topics {
            f(t.error_code);
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    };
    OffsetCommitResponse => |r, f| r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
    OffsetFetchResponse => |r, f| {
        f(r.error_code);
        r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
        for g in &r.groups {
            f(g.error_code);
            g.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
        }
    };
    FindCoordinatorResponse => |r, f| {
        f(r.error_code);
        r.coordinators.iter().for_each(|c| f(c.error_code));
    };
    JoinGroupResponse => |r, f| f(r.error_code);
    HeartbeatResponse => |r, f| f(r.error_code);
    LeaveGroupResponse => |r, f| {
        f(r.error_code);
        r.members.iter().for_each(|m| f(m.error_code));
    };
    SyncGroupResponse => |r, f| f(r.error_code);
    DescribeGroupsResponse => |r, f| r.groups.iter().for_each(|g| f(g.error_code));
    ListGroupsResponse => |r, f| f(r.error_code);
    ApiVersionsResponse => |r, f| f(r.error_code);
    CreateTopicsResponse => |r, f| r.topics.iter().for_each(|t| f(t.error_code));
    DeleteTopicsResponse => |r, f| r.responses.iter().for_each(|t| f(t.error_code));
    DeleteRecordsResponse => |r, f| r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
    InitProducerIdResponse => |r, f| f(r.error_code);
    DescribeConfigsResponse => |r, f| r.results.iter().for_each(|x| f(x.error_code));
    AlterConfigsResponse => |r, f| r.responses.iter().for_each(|x| f(x.error_code));
    CreatePartitionsResponse => |r, f| r.results.iter().for_each(|x| f(x.error_code));
    DeleteGroupsResponse => |r, f| r.results.iter().for_each(|x| f(x.error_code));
    IncrementalAlterConfigsResponse => |r, f| r.responses.iter().for_each(|x| f(x.error_code));
    OffsetDeleteResponse => |r, f| {
        f(r.error_code);
        r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
    };
    DescribeClusterResponse => |r, f| f(r.error_code);
    DescribeLogDirsResponse => |r, f| {
        f(r.error_code);
        r.results.iter().for_each(|d| f(d.error_code));
    };
    ListPartitionReassignmentsResponse => |r, f| f(r.error_code);
    DescribeClientQuotasResponse => |r, f| f(r.error_code);
    DescribeProducersResponse => |r, f| r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
    DescribeTopicPartitionsResponse => |r, f| {
        for t in &r.topics {
            f(t.error_code);
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    };
}

thread_local! {
    /// (API key, error code) → responses' error codes counted on this shard.
    static COUNTS: RefCell<BTreeMap<(i16, i16), u64>> = const { RefCell::new(BTreeMap::new()) };
}

/// Counts the non-zero error codes of `api`'s response `r`.
pub fn count(api: ApiKey, r: &dyn ErrorCodes) {
    COUNTS.with(|c| {
        let mut c = c.borrow_mut();
        r.error_codes(&mut |code| {
            if code != 0 {
                *c.entry((api as i16, code)).or_insert(0) += 1;
            }
        });
    });
}

/// This shard's counts: (API key, error code, count), in key order.
pub fn snapshot() -> Vec<(i16, i16, u64)> {
    COUNTS.with(|c| c.borrow().iter().map(|(&(a, e), &n)| (a, e, n)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_codes_are_found_and_none_is_not_counted() {
        let mut r = ProduceResponse::default();
        let mut t = produce_response::TopicProduceResponse::default();
        for code in [0, 3, 3] {
            let p = produce_response::PartitionProduceResponse::default().with_error_code(code);
            t.partition_responses.push(p);
        }
        r.responses.push(t);
        let before = snapshot();
        count(ApiKey::Produce, &r);
        let after = snapshot();
        let n = |s: &[(i16, i16, u64)]| s.iter().find(|x| x.0 == 0 && x.1 == 3).map_or(0, |x| x.2);
        assert_eq!(n(&after) - n(&before), 2);
        assert!(after.iter().all(|x| x.1 != 0));
    }
}
