# Disco's everyday commands. Each recipe runs what CI runs.

export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", env_var("HOME") / ".cache/disco-target")

# List the recipes.
default:
    @just --list

# Run disco (default `up`: every role, one process, in-memory bus). `just run command-worker`
run *ARGS:
    scripts/run {{ARGS}}

# Every role and the Discord simulator in one process, with a short scripted session.
demo *ARGS:
    scripts/run demo {{ARGS}}

# Every test, as CI runs them.
test *ARGS:
    scripts/test {{ARGS}}

# Formatting and lints, as CI runs them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets --locked -- -D warnings
    cargo clippy --locked -p disco --bins --no-default-features -- -D warnings

# Format the code.
fmt:
    cargo fmt --all

# The whole CI run.
ci:
    .ci/run

# Watch what crosses RabbitMQ. `just tail 'MESSAGE_CREATE.*'`
tail *PATTERNS:
    scripts/run tail {{PATTERNS}}

# The Discord simulator alone. `just sim --interactions-url http://127.0.0.1:8080/interactions`
sim *ARGS:
    scripts/run sim {{ARGS}}

# Simulator throughput: MESSAGE_CREATE dispatches per second to one shard.
bench-sim:
    cargo bench --locked -p discord-sim --bench dispatch

# Gateway throughput with confirms, CPU per event, idle memory of 16 shards, and 64 shards in
# four processes: time to READY, memory per shard, CPU per 1,000 events (release build).
bench-gateway:
    cargo build --locked --release --bin disco
    cargo bench --locked -p tests --bench gateway

# Commands per second and dispatch-to-reply latency: gateway + worker + RabbitMQ (release build).
bench-commands:
    cargo bench --locked -p tests --bench commands

# The interactions webhook under load: PING and commands, requests per second and latency.
bench-ingress:
    cargo bench --locked -p tests --bench ingress

# CPU per voice call, and how many calls one voice node holds (CALLS=1,10,20 sets the steps).
bench-voice:
    cargo build --locked --release --bin disco
    cargo bench --locked -p tests --bench voice

# Discord REST through the rest-proxy against going direct: requests/s, CPU per request.
bench-rest:
    cargo build --locked --release --bin disco
    cargo bench --locked -p tests --bench rest

# CPU per command of `disco up` with Discord answering after 20 ms, paced by its global limit,
# against the discord.py bot of the original request in the same run.
bench-up:
    cargo build --locked --release --bin disco
    cargo bench --locked -p tests --bench up

# The fleet as ops run it (gateway, 2 workers, rest-proxy on RabbitMQ): CPU per command split
# between Disco and RabbitMQ, against the discord.py bot; p99 latency at 500 commands/s.
bench-fleet:
    cargo build --locked --release --bin disco
    cargo bench --locked -p tests --bench fleet

# Slash commands through the webhook: Disco (ingress, worker, RabbitMQ) against the Flask +
# PyNaCl endpoint of the original request, requests per second and CPU per command.
bench-webhook:
    cargo build --locked --release --bin disco
    cargo bench --locked -p tests --bench webhook

# The release `disco` built with profile-guided optimisation, trained on `disco up` answering
# ~~ping (three release builds). `just release --no-default-features` for the production one.
release *ARGS:
    scripts/build-release {{ARGS}}

# Every benchmark.
bench: bench-sim bench-gateway bench-commands bench-ingress bench-voice bench-rest bench-up bench-fleet bench-webhook
