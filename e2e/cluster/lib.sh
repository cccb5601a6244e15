# shellcheck shell=bash
# Shared settings and helpers for the local cluster scripts (local-up, local-down,
# build-image). Sourced, never run.
# shellcheck disable=SC2034  # the variables are used by the scripts that source this

# Everything a running cluster owns lives under this one directory.
BP_STATE_DIR="${BRIDGEPOOL_CLUSTER_DIR:-/var/lib/bridgepool-cluster}"
# Built binaries and images survive `local-down` here, keyed by version.
BP_CACHE_DIR="${BRIDGEPOOL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/bridgepool}"

# The one place that names the Kubernetes version the local cluster runs.
BP_K8S_VERSION="1.34.3"
BP_K8S_DIR="$BP_CACHE_DIR/kubernetes-$BP_K8S_VERSION"
BP_BIN_DIR="$BP_K8S_DIR/bin"
BP_PAUSE_ARCHIVE="$BP_K8S_DIR/pause-oci.tar"
# The sandbox image the runtime is told to use (containerd's sandbox_image);
# the name only has to match the image we import, nothing pulls it.
BP_PAUSE_IMAGE="registry.k8s.io/pause:3.10"

# Test tools that build-tools installs with `go install`, cached by version:
# Helm renders and lints the chart; kube-router (test infrastructure only)
# enforces NetworkPolicy in the local cluster.
BP_HELM_VERSION="3.19.0"
BP_HELM="$BP_CACHE_DIR/tools/helm-$BP_HELM_VERSION/helm"
BP_KUBE_ROUTER_VERSION="2.1.0"
BP_KUBE_ROUTER="$BP_CACHE_DIR/tools/kube-router-$BP_KUBE_ROUTER_VERSION/kube-router"

# Addresses: all of them in the benchmarking ranges, so nothing leaves the machine.
BP_HOST_IP="198.19.255.1"       # on lo: apiserver bind/advertise address, kubelet node IP
BP_POD_CIDR="198.18.0.0/24"
BP_POD_GATEWAY="198.18.0.1"
BP_SERVICE_CIDR="198.19.0.0/24"
BP_BRIDGE="bpcni0"
BP_NODE_NAME="bridgepool-node"
BP_APISERVER_PORT=6443
BP_APISERVER_URL="https://$BP_HOST_IP:$BP_APISERVER_PORT"

# Layout of the state directory.
BP_KUBECONFIG="$BP_STATE_DIR/kubeconfig"
BP_PKI_DIR="$BP_STATE_DIR/pki"
BP_LOG_DIR="$BP_STATE_DIR/logs"
BP_RUN_DIR="$BP_STATE_DIR/run"
BP_CONTAINERD_DIR="$BP_STATE_DIR/containerd"
BP_CONTAINERD_SOCK="$BP_CONTAINERD_DIR/containerd.sock"
BP_CNI_CONF_DIR="$BP_STATE_DIR/cni/net.d"
BP_SAVED_SYSCTLS="$BP_STATE_DIR/saved-sysctls"
# Paths the kubelet and the CNI library use whatever their flags say. Each is a
# bind mount of a directory under $BP_STATE_DIR/host while the cluster runs.
BP_FIXED_HOST_DIRS=(/var/lib/kubelet /var/log/pods /var/log/containers /var/lib/cni /etc/cni)
BP_HOST_DIRS_CREATED="$BP_STATE_DIR/host-dirs-created"

# Images are built with buildah into a store of our own, kept in the cache.
BP_BUILDAH_ROOT="$BP_CACHE_DIR/buildah/storage"
BP_BUILDAH_RUNROOT="/run/bridgepool-buildah"
BP_BASE_IMAGE="localhost/bridgepool-python-base:bookworm"

# Exit code meaning "this machine cannot run the local cluster"; tests skip on it.
BP_EXIT_CANNOT_RUN=3

bp_log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

bp_die() { bp_log "error: $*"; exit 1; }

bp_cannot_run() {
    bp_log "cannot run the local cluster here: $*"
    exit "$BP_EXIT_CANNOT_RUN"
}

# Go on PATH, at least 1.<minor>; otherwise "cannot run", saying what needs it.
bp_require_go() {
    local min_minor="$1" purpose="$2" v
    command -v go >/dev/null || bp_cannot_run "no Go toolchain on PATH ($purpose needs Go 1.$min_minor+)"
    v="$(go env GOVERSION)"  # e.g. go1.26.8
    [[ "$v" =~ ^go1\.([0-9]+) ]] || bp_die "cannot read the Go version from '$v'"
    (( BASH_REMATCH[1] >= min_minor )) || bp_cannot_run "Go $v is too old for $purpose (needs 1.$min_minor+)"
}

# Seconds since the epoch, for phase timings.
bp_now() { date +%s; }

# The kubectl built with the cluster, of the same version (one on PATH may be
# outside the supported skew).
bp_kubectl() { "$BP_BIN_DIR/kubectl" --kubeconfig "$BP_KUBECONFIG" "$@"; }

bp_ctr() { ctr --address "$BP_CONTAINERD_SOCK" --namespace k8s.io "$@"; }

bp_buildah() {
    buildah --root "$BP_BUILDAH_ROOT" --runroot "$BP_BUILDAH_RUNROOT" --storage-driver vfs "$@"
}

# True when the process recorded in run/<name>.pid is alive and its program is
# still <binary> (default: <name>), which guards against a recycled pid.
bp_running() {
    local name="$1" binary="${2:-$1}" pidfile="$BP_RUN_DIR/$1.pid" pid argv0
    [[ -f "$pidfile" ]] || return 1
    pid="$(cat "$pidfile")"
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    argv0="$(tr '\0' '\n' <"/proc/$pid/cmdline" | head -n 1)"
    [[ "$(basename -- "$argv0")" == "$binary" ]]
}

# Print "URI KEYRING" of the apt entry for Debian bookworm ("-" for no keyring),
# from deb822 .sources files or the one-line format.
bp_debian_mirror() {
    local uri="" signed_by=""
    # deb822 files: take the first stanza of type deb whose suites include bookworm.
    read -r uri signed_by < <(
        cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '
            BEGIN { RS = ""; FS = "\n" }
            {
                types = ""; suites = ""; uris = ""; key = ""
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^Types:/) types = $i
                    if ($i ~ /^Suites:/) suites = $i
                    if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris); sub(/[ \t].*/, "", uris) }
                    if ($i ~ /^Signed-By:/) { key = $i; sub(/^Signed-By:[ \t]*/, "", key) }
                }
                if (types ~ /[ \t]deb([ \t]|$)/ && suites ~ /[ \t]bookworm([ \t]|$)/) {
                    print uris, (key == "" ? "-" : key); exit
                }
            }'
    ) || true
    if [[ -z "$uri" ]]; then
        # One-line format: "deb [signed-by=KEY] URI bookworm main ...".
        read -r uri signed_by < <(
            cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '
                $1 == "deb" {
                    key = "-"; n = 2
                    if ($2 ~ /^\[/) {
                        for (; n <= NF; n++) {
                            if ($n ~ /signed-by=/) { key = $n; sub(/.*signed-by=/, "", key); sub(/\]$/, "", key) }
                            if ($n ~ /\]$/) { n++; break }
                        }
                    }
                    if ($(n + 1) == "bookworm") { print $n, key; exit }
                }'
        ) || true
    fi
    [[ -n "$uri" ]] && echo "$uri $signed_by"
}

# Wait until a command succeeds, up to a number of seconds.
bp_wait_for() {
    local what="$1" timeout="$2"; shift 2
    local deadline=$(( $(bp_now) + timeout ))
    until "$@" >/dev/null 2>&1; do
        if (( $(bp_now) >= deadline )); then
            bp_log "timed out after ${timeout}s waiting for $what"
            return 1
        fi
        sleep 1
    done
}
