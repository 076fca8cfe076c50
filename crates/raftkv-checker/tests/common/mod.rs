//! Helpers shared by the integration tests: a terse history builder, a small
//! seeded random generator, and a generator of histories that are
//! linearizable by construction.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;

use raftkv_checker::{Input, Operation, Output};

pub const MS: u64 = 1_000_000;

/// Builds histories with times given in milliseconds.
#[derive(Default)]
pub struct History {
    pub ops: Vec<Operation>,
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(
        &mut self,
        client: u64,
        input: Input,
        output: Output,
        call_ms: u64,
        return_ms: u64,
    ) -> u64 {
        let id = self.ops.len() as u64;
        let return_ns = if output == Output::Unknown {
            u64::MAX
        } else {
            return_ms * MS
        };
        self.ops.push(Operation {
            id,
            client,
            input,
            output,
            call_ns: call_ms * MS,
            return_ns,
        });
        id
    }

    pub fn set(
        &mut self,
        client: u64,
        key: &str,
        value: &str,
        call_ms: u64,
        return_ms: u64,
    ) -> u64 {
        let input = Input::Set {
            key: key.into(),
            value: value.into(),
        };
        self.push(client, input, Output::Ok, call_ms, return_ms)
    }

    pub fn set_unknown(&mut self, client: u64, key: &str, value: &str, call_ms: u64) -> u64 {
        let input = Input::Set {
            key: key.into(),
            value: value.into(),
        };
        self.push(client, input, Output::Unknown, call_ms, 0)
    }

    pub fn delete(&mut self, client: u64, key: &str, call_ms: u64, return_ms: u64) -> u64 {
        self.push(
            client,
            Input::Delete { key: key.into() },
            Output::Ok,
            call_ms,
            return_ms,
        )
    }

    pub fn delete_unknown(&mut self, client: u64, key: &str, call_ms: u64) -> u64 {
        self.push(
            client,
            Input::Delete { key: key.into() },
            Output::Unknown,
            call_ms,
            0,
        )
    }

    pub fn get(
        &mut self,
        client: u64,
        key: &str,
        seen: Option<&str>,
        call_ms: u64,
        return_ms: u64,
    ) -> u64 {
        let output = Output::Value(seen.map(str::to_string));
        self.push(
            client,
            Input::Get { key: key.into() },
            output,
            call_ms,
            return_ms,
        )
    }

    pub fn get_unknown(&mut self, client: u64, key: &str, call_ms: u64) -> u64 {
        self.push(
            client,
            Input::Get { key: key.into() },
            Output::Unknown,
            call_ms,
            0,
        )
    }
}

/// SplitMix64: small, seeded, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    /// Uniform in `0..bound` (bound > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

pub struct GenConfig {
    pub ops: usize,
    pub keys: usize,
    pub clients: usize,
    /// Percent of operations whose outcome is lost.
    pub unknown_percent: u64,
    /// Longest operation, in ns; 0 makes every op instantaneous.
    pub latency_ns_max: u64,
    /// Largest gap between a client's operations, in ns.
    pub think_ns_max: u64,
    /// SETs pick from this many values per key; 0 makes every value unique.
    pub value_pool: u64,
}

/// A history produced by running the operations against a real map, each at
/// a point inside its interval: linearizable by construction. Unknown writes take effect with probability 1/2.
pub fn linearizable_history(rng: &mut Rng, config: &GenConfig) -> Vec<Operation> {
    let planned = plan(rng, config);
    let outputs = run_on_a_map(&planned);
    planned
        .into_iter()
        .zip(outputs)
        .enumerate()
        .map(|(id, (p, output))| {
            let output = if p.unknown { Output::Unknown } else { output };
            let return_ns = if p.unknown { u64::MAX } else { p.return_ns };
            Operation {
                id: id as u64,
                client: p.client,
                input: p.input,
                output,
                call_ns: p.call_ns,
                return_ns,
            }
        })
        .collect()
}

struct Planned {
    client: u64,
    input: Input,
    call_ns: u64,
    return_ns: u64,
    /// When it takes effect, inside `call_ns..=return_ns`.
    effect_ns: u64,
    unknown: bool,
    /// False for an unknown op that never took effect.
    applies: bool,
}

/// Each client issues its ops back to back; an unknown op ends the client's
/// wait (like a timeout) and the client moves on.
fn plan(rng: &mut Rng, config: &GenConfig) -> Vec<Planned> {
    let mut client_clock = vec![0u64; config.clients];
    (0..config.ops)
        .map(|i| {
            let client = rng.below(config.clients as u64) as usize;
            let call_ns = client_clock[client] + rng.below(config.think_ns_max + 1);
            let return_ns = call_ns + rng.below(config.latency_ns_max + 1);
            let effect_ns = call_ns + rng.below(return_ns - call_ns + 1);
            client_clock[client] = return_ns;
            let key = format!("k{}", rng.below(config.keys as u64));
            let input = match rng.below(10) {
                0..=3 => Input::Get { key },
                4..=8 => {
                    let value = match config.value_pool {
                        0 => format!("v{i}"),
                        pool => format!("p{}", rng.below(pool)),
                    };
                    Input::Set { key, value }
                }
                _ => Input::Delete { key },
            };
            let unknown = rng.chance(config.unknown_percent);
            let applies = !unknown || rng.chance(50);
            Planned {
                client: client as u64,
                input,
                call_ns,
                return_ns,
                effect_ns,
                unknown,
                applies,
            }
        })
        .collect()
}

/// Applies the ops in effect order (ties by index) to a real map.
fn run_on_a_map(planned: &[Planned]) -> Vec<Output> {
    let mut order: Vec<usize> = (0..planned.len()).collect();
    order.sort_by_key(|&i| (planned[i].effect_ns, i));
    let mut map: HashMap<String, String> = HashMap::new();
    let mut outputs = vec![Output::Unknown; planned.len()];
    for i in order.into_iter().filter(|&i| planned[i].applies) {
        outputs[i] = match &planned[i].input {
            Input::Get { key } => Output::Value(map.get(key).cloned()),
            Input::Set { key, value } => {
                map.insert(key.clone(), value.clone());
                Output::Ok
            }
            Input::Delete { key } => {
                map.remove(key);
                Output::Ok
            }
        };
    }
    outputs
}
