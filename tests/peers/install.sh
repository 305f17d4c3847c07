#!/usr/bin/env bash
# Installs the real servers and clients that cutover's tests and benchmarks run
# against (DESIGN.md §4 "Real peers"). Pinned, idempotent, and fast when
# everything is already there: a warm run only looks at files and never calls
# `apt-get update`.
#
# Usage: tests/peers/install.sh [GROUP...]
#   redis      Debian redis-server + redis-tools (redis-cli, redis-benchmark) + openssl (test certificates)
#   proxies    Debian nutcracker (twemproxy) + haproxy, peers for benchmarks
#   etcd       Debian etcd-server (binary `etcd`)
#   kafka      Apache Kafka 4.1.1 jars from Maven Central (broker, tools, Java client) under
#              $CUTOVER_PEERS/kafka-4.1.1 + confluent-kafka (librdkafka) in a venv
#   rocketmq   Apache RocketMQ 5.3.3 (namesrv, broker, tools, Java client 5.3.3) and the
#              Java client 4.9.8 with its ACL hook (rocketmq-acl 4.9.8, in a directory of its
#              own), jars from Maven Central (Debian openjdk-17-jdk-headless + maven); the test
#              clients tests/peers/rocketmq-java run from source, no build step
#   fuzz       cargo-fuzz
#   chromium   Debian chromium + chromium-driver
#   browser    chromium above + playwright-core (npm) under $CUTOVER_PEERS/node, for the console test
#   all        every group above
# With no GROUP: `redis proxies`.
#
# Everything that is not a Debian package goes under $CUTOVER_PEERS
# (default ~/.cache/cutover-peers); its bin/ holds a stable link to every
# binary, and $CUTOVER_PEERS/env has the PATH exports for a shell. The test
# support code (tests/support) looks there itself, so tests need no env.
#
# Debian packages are pinned by the release (bookworm), not by exact version:
# the archive drops a superseded security build, so an exact pin would break.
set -euo pipefail

CUTOVER_PEERS=${CUTOVER_PEERS:-$HOME/.cache/cutover-peers}
PYTHON=${PYTHON:-python3}

# Pinned versions.
# Bundles librdkafka 2.x (2.16.1 → librdkafka 2.16); Debian's librdkafka 2.0.2
# is older than the clients users run.
CONFLUENT_KAFKA_VERSION="2.16.1"
# Apache Kafka from Maven Central: kafka_2.13 (broker), kafka-tools and the
# log4j2 binding (without it the broker logs nothing, not even its ready line).
APACHE_KAFKA_VERSION="4.1.1"
LOG4J_VERSION="2.24.3"
CARGO_FUZZ_VERSION="0.13.2"
# Drives Debian's chromium (no browser download: playwright-core has no
# install script and no dependencies).
PLAYWRIGHT_CORE_VERSION="1.65.1"

ALL_GROUPS=(redis proxies etcd kafka rocketmq fuzz chromium browser)
DEFAULT_GROUPS=(redis proxies)

BIN_DIR="$CUTOVER_PEERS/bin"
VENV="$CUTOVER_PEERS/venv"
KAFKA_STAMP="$VENV/.cutover-kafka"
KAFKA_SPEC="confluent-kafka==$CONFLUENT_KAFKA_VERSION"
APACHE_KAFKA_DIR="$CUTOVER_PEERS/kafka-$APACHE_KAFKA_VERSION"
APACHE_KAFKA_SPEC="kafka_2.13 $APACHE_KAFKA_VERSION, kafka-tools $APACHE_KAFKA_VERSION, log4j-slf4j-impl $LOG4J_VERSION"

usage() {
    sed -n '/^# Usage:/,/^# With no GROUP/p' "$0" | sed 's/^# \{0,1\}//'
}

die() {
    echo "install.sh: $*" >&2
    exit 1
}

now_ms() { date +%s%3N; }

# "1.2s" since the given now_ms value.
elapsed() {
    local ms=$(($(now_ms) - $1))
    printf '%d.%ds' $((ms / 1000)) $((ms % 1000 / 100))
}

# --- Debian packages ----------------------------------------------------------

apt_packages() {
    case $1 in
    redis) echo redis-server redis-tools openssl ;;
    proxies) echo nutcracker haproxy ;;
    etcd) echo etcd-server ;;
    chromium | browser) echo chromium chromium-driver ;;
    # The JDK (java, and jar to unpack the logback files) and Maven for the
    # jars and the Java test clients.
    rocketmq) echo openjdk-17-jdk-headless maven ;;
    esac
}

# Binaries each apt group must provide; checked after install.
apt_binaries() {
    case $1 in
    redis) echo redis-server redis-cli redis-benchmark openssl ;;
    proxies) echo nutcracker haproxy ;;
    etcd) echo etcd ;;
    chromium | browser) echo chromium chromedriver ;;
    rocketmq) echo java jar mvn ;;
    esac
}

deb_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

# Runs apt-get, waiting for a lock held by another apt process (another
# session or engineer may be installing at the same time). The dpkg lock
# honours DPkg::Lock::Timeout; the lists lock of `update` does not, so retry.
apt_get() {
    local try out
    for try in $(seq 1 60); do
        if out=$($SUDO env DEBIAN_FRONTEND=noninteractive \
            apt-get -o DPkg::Lock::Timeout=600 -y -q "$@" 2>&1); then
            return 0
        fi
        if ! grep -qE 'Could not get lock|Unable to lock' <<<"$out"; then
            echo "$out" >&2
            return 1
        fi
        sleep 5
    done
    echo "$out" >&2
    return 1
}

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi

apt_install() {
    echo "install.sh: apt-get install $*" >&2
    apt_get update || die "apt-get update failed"
    apt_get install --no-install-recommends "$@" || die "apt-get install $* failed"
}

# One version string for the status line, read from the binary itself.
apt_group_version() {
    case $1 in
    redis) echo "redis-server $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')" ;;
    proxies)
        local nc hp
        nc=$(nutcracker --version 2>&1 | sed -n 's/.*nutcracker-\([^ ]*\).*/\1/p')
        hp=$(haproxy -v 2>&1 | sed -n '1s/^HAProxy version \([^ ]*\).*/\1/p')
        echo "nutcracker $nc, haproxy $hp"
        ;;
    etcd) echo "etcd $(etcd --version 2>&1 | sed -n 's/^etcd Version: //p')" ;;
    chromium | browser) echo "$(chromium --version 2>/dev/null | head -1)" ;;
    esac
}

check_apt_group() {
    local group=$1 bin
    for bin in $(apt_binaries "$group"); do
        command -v "$bin" >/dev/null || die "peer $group: $bin missing after install"
    done
}

# --- kafka: Apache Kafka jars + confluent-kafka in a venv -----------------------

ensure_venv() {
    if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
        die "$PYTHON cannot create a venv: install python3-venv (apt) or set PYTHON"
    fi
    [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
}

venv_present() {
    [[ -x "$VENV/bin/python" && -f $KAFKA_STAMP ]] && [[ $(<"$KAFKA_STAMP") == "$KAFKA_SPEC" ]]
}

install_venv() {
    ensure_venv
    rm -f "$KAFKA_STAMP"
    "$VENV/bin/python" -m pip install -q --no-input --disable-pip-version-check \
        $KAFKA_SPEC >&2 || die "pip install $KAFKA_SPEC failed"
    "$VENV/bin/python" -c 'import confluent_kafka' || die "confluent_kafka does not import"
    echo "$KAFKA_SPEC" >"$KAFKA_STAMP"
}

apache_kafka_present() {
    [[ -f "$APACHE_KAFKA_DIR/.stamp" ]] && [[ $(<"$APACHE_KAFKA_DIR/.stamp") == "$APACHE_KAFKA_SPEC" ]]
}

kafka_present() { venv_present && apache_kafka_present; }

# The jars of the broker, its tools and the Java client, resolved by Maven
# from a three-dependency pom into libs/ (no distribution tarball, no scripts:
# tests run `java -cp 'libs/*' MAIN` themselves). Built in a scratch dir and
# renamed into place, so a half-done copy is never taken for an install.
install_apache_kafka() {
    command -v java >/dev/null || die "peer kafka: java is missing (apt-get install openjdk-17-jre-headless)"
    command -v mvn >/dev/null || die "peer kafka: mvn is missing (apt-get install maven)"
    local work="$APACHE_KAFKA_DIR.tmp"
    rm -rf "$work"
    mkdir -p "$work/config"
    kafka_pom >"$work/pom.xml"
    (cd "$work" && mvn -B -q "$MAVEN_DEPENDENCY_PLUGIN:copy-dependencies" \
        -DincludeScope=runtime -DoutputDirectory=libs >"$work/install.log" 2>&1) || {
        tail -n 30 "$work/install.log" >&2
        die "mvn copy-dependencies for Apache Kafka $APACHE_KAFKA_VERSION failed"
    }
    [[ -f "$work/libs/kafka_2.13-$APACHE_KAFKA_VERSION.jar" && -f "$work/libs/kafka-clients-$APACHE_KAFKA_VERSION.jar" ]] ||
        die "Apache Kafka jars missing after mvn (see $work/install.log)"
    write_log4j2 info >"$work/config/log4j2.properties"
    write_log4j2 warn >"$work/config/tools-log4j2.properties"
    echo "$APACHE_KAFKA_SPEC" >"$work/.stamp"
    rm -rf "$APACHE_KAFKA_DIR"
    mv "$work" "$APACHE_KAFKA_DIR"
}

kafka_pom() {
    cat <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
 <groupId>local.peers</groupId><artifactId>kafka-dist</artifactId><version>1</version><packaging>pom</packaging>
 <dependencies>
  <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$APACHE_KAFKA_VERSION</version></dependency>
  <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$APACHE_KAFKA_VERSION</version></dependency>
  <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
 </dependencies></project>
POM
}

# A log4j2 configuration with one console appender at LEVEL: `info` for
# brokers (their ready line is logged at info), `warn` for tools.
write_log4j2() {
    cat <<PROPS
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = $1
rootLogger.appenderRef.console.ref = STDOUT
PROPS
}

install_kafka() {
    venv_present || install_venv
    apache_kafka_present || install_apache_kafka
}

kafka_version() {
    local ck jars
    ck=$("$VENV/bin/python" -c 'import confluent_kafka as c; print(c.__version__, "librdkafka", c.libversion()[0])')
    jars=$(find "$APACHE_KAFKA_DIR/libs" -name '*.jar' | wc -l)
    echo "Apache Kafka $APACHE_KAFKA_VERSION ($jars jars in $APACHE_KAFKA_DIR), confluent-kafka $ck"
}

# --- cargo-built peers ----------------------------------------------------------

# Whether `cargo install --root ROOT` already holds CRATE at VERSION.
cargo_installed() {
    local root=$1 crate=$2 version=$3
    [[ -f "$root/.crates.toml" ]] && grep -q "^\"$crate $version " "$root/.crates.toml"
}

# cargo install CRATE@VERSION into ROOT with a cached target dir; log to a file.
cargo_install() {
    local root=$1 crate=$2 version=$3
    mkdir -p "$root"
    CARGO_TARGET_DIR="$root/target" cargo install --locked --root "$root" \
        --version "$version" "$crate" >"$root/install.log" 2>&1
}

# --- rocketmq: Apache RocketMQ jars from Maven Central ----------------------------

# The servers, tools and 5.x client share one class path; the 4.9 client
# (legacy route JSON, VIP channel) gets its own, so the two never mix.
ROCKETMQ_VERSION="5.3.3"
ROCKETMQ4_CLIENT_VERSION="4.9.8"
MAVEN_DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
ROCKETMQ_DIR="$CUTOVER_PEERS/rocketmq-$ROCKETMQ_VERSION"
ROCKETMQ4_DIR="$CUTOVER_PEERS/rocketmq-client-$ROCKETMQ4_CLIENT_VERSION"
# AclClientRPCHook is in rocketmq-client for 5.x but in rocketmq-acl for 4.x;
# kept apart so adding it never touches the client directory in use.
ROCKETMQ4_ACL_DIR="$CUTOVER_PEERS/rocketmq-acl-$ROCKETMQ4_CLIENT_VERSION"
# Maven's own download cache stays with the peers, not in ~/.m2.
MAVEN_REPO="$CUTOVER_PEERS/m2"

# A pom whose dependencies are `group:artifact` at VERSION, one per argument.
rocketmq_pom() {
    local version=$1 artifact
    shift
    echo '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
    echo ' <groupId>local.peers</groupId><artifactId>rmq-dist</artifactId><version>1</version><packaging>pom</packaging>'
    echo ' <dependencies>'
    for artifact in "$@"; do
        echo "  <dependency><groupId>org.apache.rocketmq</groupId><artifactId>$artifact</artifactId><version>$version</version></dependency>"
    done
    echo ' </dependencies></project>'
}

# Whether DIR holds a finished copy of SPEC (the stamp is written last).
jars_present() {
    [[ -f "$1/.stamp" && $(<"$1/.stamp") == "$2" ]]
}

# Copies the runtime jars of the pom in DIR into DIR/lib; logs to DIR/install.log.
maven_copy_jars() {
    local dir=$1
    command -v mvn >/dev/null || die "peer rocketmq: mvn is missing (apt-get install maven openjdk-17-jdk-headless)"
    command -v java >/dev/null || die "peer rocketmq: java is missing (apt-get install openjdk-17-jdk-headless)"
    rm -rf "$dir/lib.tmp"
    (cd "$dir" && mvn -B -q -Dmaven.repo.local="$MAVEN_REPO" "$MAVEN_DEPENDENCY_PLUGIN:copy-dependencies" \
        -DincludeScope=runtime -DoutputDirectory=lib.tmp >"$dir/install.log" 2>&1) || {
        tail -n 30 "$dir/install.log" >&2
        die "peer rocketmq: mvn copy-dependencies in $dir failed"
    }
    rm -rf "$dir/lib"
    mv "$dir/lib.tmp" "$dir/lib"
}

install_rocketmq() {
    local dir=$ROCKETMQ_DIR role
    mkdir -p "$dir/conf"
    rm -f "$dir/.stamp"
    rocketmq_pom "$ROCKETMQ_VERSION" rocketmq-namesrv rocketmq-broker rocketmq-tools rocketmq-client >"$dir/pom.xml"
    maven_copy_jars "$dir"
    # The logback configurations ship inside the jars; the processes are
    # pointed at these copies (the distribution's conf/ is not on Central).
    for role in namesrv broker tools client; do
        (cd "$dir/conf" && jar xf "../lib/rocketmq-$role-$ROCKETMQ_VERSION.jar" "rmq.$role.logback.xml")
        [[ -s "$dir/conf/rmq.$role.logback.xml" ]] || die "peer rocketmq: no rmq.$role.logback.xml in rocketmq-$role"
    done
    echo "rocketmq $ROCKETMQ_VERSION" >"$dir/.stamp"
}

install_rocketmq4_client() {
    local dir=$ROCKETMQ4_DIR
    mkdir -p "$dir"
    rm -f "$dir/.stamp"
    rocketmq_pom "$ROCKETMQ4_CLIENT_VERSION" rocketmq-client >"$dir/pom.xml"
    maven_copy_jars "$dir"
    echo "rocketmq-client $ROCKETMQ4_CLIENT_VERSION" >"$dir/.stamp"
}

install_rocketmq4_acl() {
    local dir=$ROCKETMQ4_ACL_DIR
    mkdir -p "$dir"
    rm -f "$dir/.stamp"
    rocketmq_pom "$ROCKETMQ4_CLIENT_VERSION" rocketmq-acl >"$dir/pom.xml"
    maven_copy_jars "$dir"
    echo "rocketmq-acl $ROCKETMQ4_CLIENT_VERSION" >"$dir/.stamp"
}

FUZZ_ROOT="$CUTOVER_PEERS/cargo"

fuzz_present() {
    cargo_installed "$FUZZ_ROOT" cargo-fuzz "$CARGO_FUZZ_VERSION" && [[ -x "$BIN_DIR/cargo-fuzz" ]]
}

install_fuzz() {
    cargo_install "$FUZZ_ROOT" cargo-fuzz "$CARGO_FUZZ_VERSION" || {
        tail -n 30 "$FUZZ_ROOT/install.log" >&2
        die "cargo install cargo-fuzz failed"
    }
    ln -sfn ../cargo/bin/cargo-fuzz "$BIN_DIR/cargo-fuzz"
}

# --- browser: playwright-core from npm -------------------------------------------

NODE_DIR="$CUTOVER_PEERS/node"

browser_present() {
    [[ -f "$NODE_DIR/node_modules/playwright-core/package.json" ]] &&
        [[ $(node -p 'require(process.argv[1]).version' \
            "$NODE_DIR/node_modules/playwright-core/package.json" 2>/dev/null) == "$PLAYWRIGHT_CORE_VERSION" ]]
}

install_browser() {
    command -v npm >/dev/null || die "peer browser: npm is missing (apt-get install nodejs npm)"
    mkdir -p "$NODE_DIR"
    [[ -f "$NODE_DIR/package.json" ]] || echo '{"name":"cutover-peers","private":true}' >"$NODE_DIR/package.json"
    npm install --prefix "$NODE_DIR" --save-exact --no-audit --no-fund --loglevel=error \
        "playwright-core@$PLAYWRIGHT_CORE_VERSION" >&2 || die "npm install playwright-core@$PLAYWRIGHT_CORE_VERSION failed"
    browser_present || die "playwright-core $PLAYWRIGHT_CORE_VERSION not found in $NODE_DIR after install"
}

# --- main ---------------------------------------------------------------------

write_env() {
    local tmp="$CUTOVER_PEERS/env.tmp"
    cat >"$tmp" <<EOF
# Written by tests/peers/install.sh; source it to put the peers on PATH.
export CUTOVER_PEERS="$CUTOVER_PEERS"
export PATH="$BIN_DIR:$VENV/bin:\$PATH"
EOF
    mv "$tmp" "$CUTOVER_PEERS/env"
}

main() {
    local groups=() g
    for g in "$@"; do
        case $g in
        -h | --help) usage; exit 0 ;;
        all) groups+=("${ALL_GROUPS[@]}") ;;
        redis | proxies | etcd | kafka | rocketmq | fuzz | chromium | browser) groups+=("$g") ;;
        *) usage >&2; die "unknown group: $g" ;;
        esac
    done
    [[ ${#groups[@]} -gt 0 ]] || groups=("${DEFAULT_GROUPS[@]}")
    # Deduplicate, keeping order.
    local -A seen=()
    local uniq=()
    for g in "${groups[@]}"; do
        [[ -n ${seen[$g]:-} ]] || uniq+=("$g")
        seen[$g]=1
    done
    groups=("${uniq[@]}")

    mkdir -p "$BIN_DIR"
    # Two runs at once (a developer and a test script) must not interleave.
    exec 9>"$CUTOVER_PEERS/.install.lock"
    flock 9

    # All missing Debian packages in one apt-get update + install.
    local -A apt_done=()
    local missing=() pkg started
    for g in "${groups[@]}"; do
        for pkg in $(apt_packages "$g"); do
            if ! deb_installed "$pkg"; then
                missing+=("$pkg")
                apt_done[$g]=1
            fi
        done
    done
    # A venv needs ensurepip, which Debian's python3 has only with python3-venv.
    if [[ -n ${seen[kafka]:-} ]] && ! venv_present && [[ $PYTHON == python3 ]] &&
        ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        missing+=(python3-venv)
    fi
    # Apache Kafka runs on Java 17 and installs with Maven.
    if [[ -n ${seen[kafka]:-} ]] && ! apache_kafka_present; then
        command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
        command -v mvn >/dev/null || missing+=(maven)
    fi
    # playwright-core needs node and npm; Debian's serve when none is installed.
    if [[ -n ${seen[browser]:-} ]] && ! command -v npm >/dev/null; then
        missing+=(nodejs npm)
    fi
    if [[ ${#missing[@]} -gt 0 ]]; then
        started=$(now_ms)
        apt_install "${missing[@]}"
        echo "install.sh: apt took $(elapsed "$started")" >&2
    fi

    for g in "${groups[@]}"; do
        started=$(now_ms)
        case $g in
        browser)
            check_apt_group "$g"
            if browser_present; then
                echo "peer browser: present ($(apt_group_version "$g"), playwright-core $PLAYWRIGHT_CORE_VERSION)"
            else
                install_browser
                echo "peer browser: installed ($(apt_group_version "$g"), playwright-core $PLAYWRIGHT_CORE_VERSION in $NODE_DIR) [$(elapsed "$started")]"
            fi
            ;;
        redis | proxies | etcd | chromium)
            check_apt_group "$g"
            local how=present
            [[ -z ${apt_done[$g]:-} ]] || how=installed
            echo "peer $g: $how ($(apt_group_version "$g"))"
            ;;
        kafka)
            if kafka_present; then
                echo "peer kafka: present ($(kafka_version)) [$(elapsed "$started")]"
            else
                install_kafka
                echo "peer kafka: installed ($(kafka_version)) [$(elapsed "$started")]"
            fi
            ;;
        rocketmq)
            check_apt_group "$g"
            if jars_present "$ROCKETMQ_DIR" "rocketmq $ROCKETMQ_VERSION"; then
                echo "peer rocketmq: present (Apache RocketMQ $ROCKETMQ_VERSION in $ROCKETMQ_DIR)"
            else
                install_rocketmq
                echo "peer rocketmq: installed (Apache RocketMQ $ROCKETMQ_VERSION in $ROCKETMQ_DIR) [$(elapsed "$started")]"
            fi
            started=$(now_ms)
            if jars_present "$ROCKETMQ4_DIR" "rocketmq-client $ROCKETMQ4_CLIENT_VERSION"; then
                echo "peer rocketmq client 4: present (rocketmq-client $ROCKETMQ4_CLIENT_VERSION in $ROCKETMQ4_DIR)"
            else
                install_rocketmq4_client
                echo "peer rocketmq client 4: installed (rocketmq-client $ROCKETMQ4_CLIENT_VERSION in $ROCKETMQ4_DIR) [$(elapsed "$started")]"
            fi
            started=$(now_ms)
            if jars_present "$ROCKETMQ4_ACL_DIR" "rocketmq-acl $ROCKETMQ4_CLIENT_VERSION"; then
                echo "peer rocketmq acl 4: present (rocketmq-acl $ROCKETMQ4_CLIENT_VERSION in $ROCKETMQ4_ACL_DIR)"
            else
                install_rocketmq4_acl
                echo "peer rocketmq acl 4: installed (rocketmq-acl $ROCKETMQ4_CLIENT_VERSION in $ROCKETMQ4_ACL_DIR) [$(elapsed "$started")]"
            fi
            ;;
        fuzz)
            if fuzz_present; then
                echo "peer fuzz: present ($("$BIN_DIR/cargo-fuzz" --version))"
            else
                install_fuzz
                echo "peer fuzz: installed ($("$BIN_DIR/cargo-fuzz" --version)) [$(elapsed "$started")]"
            fi
            ;;
        esac
    done
    write_env
}

main "$@"
