#!/usr/bin/env bash
# tuning/test.sh: runs check, apply and revert against fake trees built in a
# temporary directory (never the real /), and shellcheck on every script.
# Prints "tuning: N passed, M failed" last; exits 1 if anything failed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

passed=0 failed=0
ok() {
  passed=$((passed + 1))
  printf 'ok    %s\n' "$1"
}
fail() {
  failed=$((failed + 1))
  printf 'FAIL  %s\n' "$1"
  if [[ -n ${2:-} ]]; then printf '%s\n' "$2" | sed 's/^/      /'; fi
}
# matches NAME TEXT PATTERN: TEXT matches the glob PATTERN.
matches() {
  # shellcheck disable=SC2254 # the pattern is a glob on purpose
  case $2 in
    $3) ok "$1" ;;
    *) fail "$1" "$2" ;;
  esac
}
# expect NAME COMMAND...: the command succeeds.
expect() {
  local name=$1
  shift
  if "$@"; then ok "$name"; else fail "$name"; fi
}

# A checksum of a whole tree: names, types, link targets and contents.
tree_sum() {
  (
    cd "$1"
    find . -printf '%y %p %l\n' | LC_ALL=C sort
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
  ) | sha256sum
}

put() { # put ROOT PATH CONTENT: a file with CONTENT and a newline
  mkdir -p "$(dirname "$1$2")"
  printf '%s\n' "$3" >"$1$2"
}

# A badly tuned two-CPU machine with a two-queue interface eth9 on the
# default route. The knobs apply leaves alone (io_uring, clocksource) are good
# here; they get their own cases below.
make_tree() {
  local r=$1
  put "$r" /proc/sys/kernel/io_uring_disabled 0
  put "$r" /proc/sys/net/core/somaxconn 128
  put "$r" /proc/sys/net/core/rmem_max 212992
  put "$r" /proc/sys/net/core/wmem_max 212992
  put "$r" /proc/sys/net/core/busy_poll 50
  put "$r" /proc/sys/net/core/busy_read 0
  put "$r" /proc/sys/net/ipv4/tcp_max_syn_backlog 512
  put "$r" /proc/sys/vm/swappiness 60
  printf 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/swapfile                               file\t\t1048572\t\t0\t\t-2\n' >"$r/proc/swaps"
  put "$r" /sys/kernel/mm/transparent_hugepage/enabled "[always] madvise never"
  put "$r" /sys/devices/system/cpu/online 0-1
  put "$r" /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor powersave
  put "$r" /sys/devices/system/cpu/cpu0/cpufreq/scaling_available_governors "performance powersave"
  put "$r" /sys/devices/system/cpu/cpu1/cpufreq/scaling_governor schedutil
  put "$r" /sys/devices/system/cpu/cpu1/cpufreq/scaling_available_governors "performance schedutil"
  put "$r" /sys/devices/system/clocksource/clocksource0/current_clocksource tsc
  cat >"$r/proc/interrupts" <<'INT'
           CPU0       CPU1
  9:          0          0   IO-APIC    9-fasteoi   acpi
120:      12345        678   PCI-MSI 524288-edge      eth9-TxRx-0
121:        910      11121   PCI-MSI 524289-edge      eth9-TxRx-1
122:          5          6   PCI-MSI 524290-edge      eth90-TxRx-0
NMI:          0          0   Non-maskable interrupts
INT
  put "$r" /proc/irq/120/smp_affinity_list 0-1
  put "$r" /proc/irq/121/smp_affinity_list 0-1
  put "$r" /proc/irq/122/smp_affinity_list 0-1
  put "$r" /sys/class/net/eth9/queues/rx-0/rps_cpus 0
  put "$r" /sys/class/net/eth9/queues/rx-1/rps_cpus 0
  put "$r" /sys/class/net/eth9/queues/tx-0/xps_cpus 0
  put "$r" /sys/class/net/eth9/queues/tx-1/xps_cpus 0
  put "$r" /sys/class/net/eth90/queues/rx-0/rps_cpus 0
  mkdir -p "$r/proc/net"
  printf 'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\neth9\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n' >"$r/proc/net/route"
}

# Good process limits and no irqbalance, so only the tree decides.
export HONGBAO_TUNING_MEMLOCK=unlimited HONGBAO_TUNING_NOFILE=1048576 HONGBAO_TUNING_IRQBALANCE=stopped

root=$work/root
orig=$work/orig
make_tree "$root"
cp -a "$root" "$orig"
export HONGBAO_TUNING_ROOT=$root
value() { cat "$root$1"; }

# Every script passes shellcheck.
if out=$(cd "$here" && shellcheck -x check apply revert lib.sh test.sh 2>&1); then
  ok "shellcheck clean on check, apply, revert, lib.sh, test.sh"
else
  fail "shellcheck clean" "$out"
fi

# check on the bad tree.
sum0=$(tree_sum "$root")
rc=0
out=$("$here/check" 2>&1) || rc=$?
expect "check exits 1 on a badly tuned tree (exit $rc)" test "$rc" = 1
for knob in net.core.somaxconn net.ipv4.tcp_max_syn_backlog net.core.rmem_max net.core.wmem_max \
  net.core.busy_poll "transparent hugepages" "cpu0 governor" "cpu1 governor" "swap / vm.swappiness" \
  "irq 120 (eth9-TxRx-0)" "irq 121 (eth9-TxRx-1)" "eth9 rx-0 rps_cpus" "eth9 tx-1 xps_cpus"; do
  if grep -F "$knob" <<<"$out" | grep -q ' WARN '; then ok "check: WARN $knob"; else fail "check: WARN $knob" "$out"; fi
done
for knob in net.core.busy_read kernel.io_uring_disabled clocksource "memlock" "nofile" irqbalance; do
  if grep -F "$knob" <<<"$out" | grep -q ' OK '; then ok "check: OK $knob"; else fail "check: OK $knob" "$out"; fi
done
if grep -q 'always' <<<"$(grep -F 'transparent hugepages' <<<"$out")"; then ok "check: THP current read from the brackets"; else fail "check: THP current" "$out"; fi
if grep -q 'irq 122' <<<"$out"; then fail "check: eth90's IRQ is not eth9's" "$out"; else ok "check: eth90's IRQ is not eth9's"; fi
expect "check changes nothing" test "$(tree_sum "$root")" = "$sum0"

# apply, dry run.
rc=0
out=$("$here/apply" 2>&1) || rc=$?
expect "apply dry run exits 0" test "$rc" = 0
if grep -q 'would set net.core.somaxconn: 128 -> 4096' <<<"$out"; then ok "apply dry run says what it would set"; else fail "apply dry run output" "$out"; fi
expect "apply dry run changes nothing" test "$(tree_sum "$root")" = "$sum0"

# apply --yes.
rc=0
out=$("$here/apply" --yes 2>&1) || rc=$?
expect "apply --yes exits 0 (exit $rc)" test "$rc" = 0
expect "somaxconn set to 4096" test "$(value /proc/sys/net/core/somaxconn)" = 4096
expect "tcp_max_syn_backlog set to 8192" test "$(value /proc/sys/net/ipv4/tcp_max_syn_backlog)" = 8192
expect "rmem_max set to 16 MiB" test "$(value /proc/sys/net/core/rmem_max)" = 16777216
expect "wmem_max set to 16 MiB" test "$(value /proc/sys/net/core/wmem_max)" = 16777216
expect "busy_poll set to 0" test "$(value /proc/sys/net/core/busy_poll)" = 0
expect "busy_read (already 0) untouched" test "$(value /proc/sys/net/core/busy_read)" = 0
expect "swappiness set to 1" test "$(value /proc/sys/vm/swappiness)" = 1
expect "THP brackets moved to madvise" test "$(value /sys/kernel/mm/transparent_hugepage/enabled)" = "always [madvise] never"
expect "cpu0 governor performance" test "$(value /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor)" = performance
expect "cpu1 governor performance" test "$(value /sys/devices/system/cpu/cpu1/cpufreq/scaling_governor)" = performance
expect "irq 120 (queue 0) on core 0" test "$(value /proc/irq/120/smp_affinity_list)" = 0
expect "irq 121 (queue 1) on core 1" test "$(value /proc/irq/121/smp_affinity_list)" = 1
expect "eth90's irq 122 untouched" test "$(value /proc/irq/122/smp_affinity_list)" = 0-1
expect "rx-0 rps_cpus = both cores" test "$(value /sys/class/net/eth9/queues/rx-0/rps_cpus)" = 3
expect "rx-1 rps_cpus = both cores" test "$(value /sys/class/net/eth9/queues/rx-1/rps_cpus)" = 3
expect "tx-0 xps_cpus = core 0" test "$(value /sys/class/net/eth9/queues/tx-0/xps_cpus)" = 1
expect "tx-1 xps_cpus = core 1" test "$(value /sys/class/net/eth9/queues/tx-1/xps_cpus)" = 2
dropin=$root/etc/sysctl.d/60-hongbao.conf
if [[ -f $dropin ]] && grep -qx 'net.core.somaxconn = 4096' "$dropin" && grep -qx 'vm.swappiness = 1' "$dropin" \
  && ! grep -q busy_read "$dropin"; then
  ok "drop-in holds the sysctls apply changed"
else
  fail "drop-in holds the sysctls apply changed" "$(cat "$dropin" 2>&1)"
fi
state=$root/var/lib/hongbao/tuning.saved
if [[ -f $state ]] && grep -qx '/sys/kernel/mm/transparent_hugepage/enabled:always' "$state" \
  && grep -qx '/proc/irq/120/smp_affinity_list:0-1' "$state" && grep -qx '/proc/sys/net/core/somaxconn:128' "$state"; then
  ok "state file holds the old values"
else
  fail "state file holds the old values" "$(cat "$state" 2>&1)"
fi
rc=0
out=$("$here/check" 2>&1) || rc=$?
if ((rc == 0)); then ok "check passes after apply"; else fail "check passes after apply (exit $rc)" "$out"; fi

# apply twice without revert is refused, and changes nothing.
sum1=$(tree_sum "$root")
rc=0
out=$("$here/apply" --yes 2>&1) || rc=$?
expect "second apply --yes refused (exit $rc)" test "$rc" = 1
expect "refused apply changes nothing" test "$(tree_sum "$root")" = "$sum1"
rc=0
out=$("$here/apply" 2>&1) || rc=$?
expect "a dry run over a state file is refused too (exit $rc)" test "$rc" = 1
matches "a refused dry run says why, and plans nothing" "$out" '*an earlier apply was not reverted*'
if grep -q 'would set' <<<"$out"; then fail "a refused dry run plans nothing" "$out"; else ok "a refused dry run plans nothing"; fi
rc=0
out=$("$here/apply" --force 2>&1) || rc=$?
expect "a dry run with --force over a state file exits 0 (exit $rc)" test "$rc" = 0

# revert.
rc=0
out=$("$here/revert" 2>&1) || rc=$?
expect "revert dry run exits 0" test "$rc" = 0
expect "revert dry run changes nothing" test "$(tree_sum "$root")" = "$sum1"
rc=0
out=$("$here/revert" --yes 2>&1) || rc=$?
expect "revert --yes exits 0 (exit $rc)" test "$rc" = 0
if d=$(diff -r "$orig" "$root" 2>&1); then ok "revert restores the tree byte for byte"; else fail "revert restores the tree byte for byte" "$d"; fi
expect "revert removed the state file" test ! -e "$state"

# --force keeps the first saved value: apply, undo one knob by hand, apply
# --force, revert: the tree must still be the original.
"$here/apply" --yes >/dev/null
put "$root" /proc/sys/net/core/somaxconn 256
rc=0
"$here/apply" --yes --force >/dev/null 2>&1 || rc=$?
expect "apply --force over a state file exits 0" test "$rc" = 0
expect "apply --force fixed the knob again" test "$(value /proc/sys/net/core/somaxconn)" = 4096
expect "apply --force kept the first saved value" test "$(grep -c '^/proc/sys/net/core/somaxconn:' "$state")" = 1
"$here/revert" --yes >/dev/null
if d=$(diff -r "$orig" "$root" 2>&1); then ok "revert after --force restores the original tree"; else fail "revert after --force" "$d"; fi

# A drop-in that existed before apply comes back after revert.
put "$root" /etc/sysctl.d/60-hongbao.conf "net.core.somaxconn = 1024"
cp -a "$root" "$work/orig2"
"$here/apply" --yes >/dev/null
"$here/revert" --yes >/dev/null
if d=$(diff -r "$work/orig2" "$root" 2>&1); then ok "revert restores a drop-in apply replaced"; else fail "revert restores a drop-in" "$d"; fi
rm -rf "${root:?}/etc"

# The operator's drop-in survives a revert that stops half-way (one value
# cannot be written back), then apply --force (as the refusal suggests) and
# a revert: the failed revert must leave apply's drop-in and its backup.
put "$root" /etc/sysctl.d/60-hongbao.conf "net.core.somaxconn = 1024"
rm -rf "$work/orig3" && cp -a "$root" "$work/orig3"
"$here/apply" --yes >/dev/null
rc=0
HONGBAO_TUNING_FAIL_WRITES=/proc/irq/121/smp_affinity_list "$here/revert" --yes >/dev/null 2>&1 || rc=$?
expect "revert with a value it cannot write back exits 1 (exit $rc)" test "$rc" = 1
if grep -q 'Written by hongbao' "$dropin"; then ok "a revert that stopped leaves apply's drop-in"; else fail "a revert that stopped leaves apply's drop-in" "$(cat "$dropin")"; fi
put "$root" /proc/sys/net/core/somaxconn 128
"$here/apply" --yes --force >/dev/null
"$here/revert" --yes >/dev/null
if d=$(diff -r "$work/orig3" "$root" 2>&1); then ok "failed revert, apply --force, revert: the operator's drop-in is back"; else fail "failed revert, apply --force, revert: the operator's drop-in is back" "$d"; fi
# The same after a revert of before this check, which had moved the backup
# back already: apply --force takes the backup again.
"$here/apply" --yes >/dev/null
mv "$root/var/lib/hongbao/60-hongbao.conf.saved" "$dropin"
put "$root" /proc/sys/net/core/somaxconn 128
"$here/apply" --yes --force >/dev/null
"$here/revert" --yes >/dev/null
if d=$(diff -r "$work/orig3" "$root" 2>&1); then ok "apply --force backs up a drop-in whose backup was moved back"; else fail "apply --force backs up a drop-in whose backup was moved back" "$d"; fi
rm -rf "${root:?}/etc"

# A write the kernel refuses (a managed IRQ's affinity: EIO on every write)
# is not saved, so revert finishes and the next apply is not refused.
irq121=/proc/irq/121/smp_affinity_list
rc=0
refuse="$irq121 /proc/sys/vm/swappiness"
HONGBAO_TUNING_FAIL_WRITES=$refuse "$here/apply" --yes >/dev/null 2>&1 || rc=$?
expect "apply with refused writes exits 1 (exit $rc)" test "$rc" = 1
if grep -q "^$irq121:\|^#irq $irq121 \|^/proc/sys/vm/swappiness:" "$state"; then fail "a refused write is not saved" "$(cat "$state")"; else ok "a refused write is not saved"; fi
if grep -q swappiness "$dropin"; then fail "a refused sysctl stays out of the drop-in" "$(cat "$dropin")"; else ok "a refused sysctl stays out of the drop-in"; fi
rc=0
out=$(HONGBAO_TUNING_FAIL_WRITES=$refuse "$here/revert" --yes 2>&1) || rc=$?
expect "revert after a refused apply write exits 0 (exit $rc)" test "$rc" = 0
expect "revert after a refused apply write removes the state file" test ! -e "$state"
if d=$(diff -r "$orig" "$root" 2>&1); then ok "revert after a refused apply write restores the tree"; else fail "revert after a refused apply write restores the tree" "$d"; fi
# A saved value that is already back needs no write (revert stopped half-way,
# or a state file from an apply that saved a refused write).
"$here/apply" --yes >/dev/null
put "$root" $irq121 0-1
rc=0
out=$(HONGBAO_TUNING_FAIL_WRITES=$irq121 "$here/revert" --yes 2>&1) || rc=$?
expect "revert skips a value already back, though it cannot be written (exit $rc)" test "$rc" = 0
expect "revert with a value already back removes the state file" test ! -e "$state"
rm -rf "${root:?}/etc"

# After apply the NIC loses a queue (rx-1 and IRQ 121 are gone) and IRQ 120
# is given to another device (a reboot, a driver reload): revert skips those
# with a note, restores the rest and finishes.
"$here/apply" --yes >/dev/null
rm -rf "$root/sys/class/net/eth9/queues/rx-1" "$root/proc/irq/121"
sed -i 's/eth9-TxRx-0$/nvme0q1/' "$root/proc/interrupts"
rc=0
out=$("$here/revert" --yes 2>&1) || rc=$?
expect "revert with a queue gone and an IRQ renamed exits 0 (exit $rc)" test "$rc" = 0
expect "... and removes the state file" test ! -e "$state"
matches "revert skips a queue that is gone" "$out" '*skipped /sys/class/net/eth9/queues/rx-1/rps_cpus: it no longer exists*'
matches "revert skips an IRQ that is gone" "$out" '*skipped /proc/irq/121/smp_affinity_list: it no longer exists*'
matches "revert skips an IRQ now another device's" "$out" '*skipped /proc/irq/120/smp_affinity_list: IRQ 120 is nvme0q1 now, was eth9-TxRx-0*'
expect "the renamed IRQ's affinity is left alone" test "$(value /proc/irq/120/smp_affinity_list)" = 0
expect "the rest is restored" test "$(value /proc/sys/net/core/somaxconn)" = 128
rm -rf "$root" && cp -a "$orig" "$root"

# A driver reload swaps the numbers of eth9's IRQs and resets their affinity;
# apply --force saves the values there now instead of keeping lines revert
# would skip, so revert puts both IRQs back.
"$here/apply" --yes >/dev/null
sed -i 's/eth9-TxRx-0$/swap/; s/eth9-TxRx-1$/eth9-TxRx-0/; s/swap$/eth9-TxRx-1/' "$root/proc/interrupts"
put "$root" /proc/irq/120/smp_affinity_list 0-1
put "$root" /proc/irq/121/smp_affinity_list 0-1
"$here/apply" --yes --force >/dev/null
rc=0
out=$("$here/revert" --yes 2>&1) || rc=$?
if ((rc == 0)) && [[ $(value /proc/irq/120/smp_affinity_list) == 0-1 && $(value /proc/irq/121/smp_affinity_list) == 0-1 ]]; then
  ok "apply --force over renamed IRQs saves their values anew; revert restores them"
else
  fail "apply --force over renamed IRQs saves their values anew; revert restores them (exit $rc)" "$out"
fi
rm -rf "$root" && cp -a "$orig" "$root"

# revert writes as root where the state file says: only where apply writes.
for evil in /etc/evil:x /sys/../etc/evil:x "#created /etc/evil" "#backup /etc/sysctl.d/60-hongbao.conf /etc/evil" "#mkdir /etc/evil"; do
  mkdir -p "$root/var/lib/hongbao"
  printf '/proc/sys/net/core/somaxconn:64\n%s\n' "$evil" >"$state"
  mkdir -p "$root/etc/evil"
  rc=0
  out=$("$here/revert" --yes 2>&1) || rc=$?
  if ((rc == 1)) && [[ $out == *"refusing line 2"* && $(value /proc/sys/net/core/somaxconn) == 128 && -d $root/etc/evil ]]; then
    ok "revert refuses the state line $evil, restoring nothing"
  else
    fail "revert refuses the state line $evil, restoring nothing (exit $rc)" "$out"
  fi
  rm -rf "${root:?}/etc" "${root:?}/var"
done
if d=$(diff -r "$orig" "$root" 2>&1); then ok "refused state files changed nothing"; else fail "refused state files changed nothing" "$d"; fi

# The knobs apply does not handle, one at a time on a copy.
case_tree() { # case_tree NAME: a fresh copy of the original tree
  rm -rf "$work/case"
  cp -a "$orig" "$work/case"
  printf '%s' "$work/case"
}
line_of() { # line_of KNOB [ENV...] -- check's line for KNOB with ENV set
  local knob=$1
  shift
  env "$@" "$here/check" 2>&1 | grep -F "$knob" || true
}
c=$(case_tree)
put "$c" /proc/sys/kernel/io_uring_disabled 2
matches "io_uring_disabled=2 is WARN" "$(line_of io_uring_disabled HONGBAO_TUNING_ROOT="$c")" '* WARN *'
rm "$c/proc/sys/kernel/io_uring_disabled"
matches "io_uring_disabled absent is OK (old kernel)" "$(line_of io_uring_disabled HONGBAO_TUNING_ROOT="$c")" '* OK *before 6.6*'
put "$c" /sys/devices/system/clocksource/clocksource0/current_clocksource kvm-clock
matches "kvm-clock is OK with a note" "$(line_of clocksource HONGBAO_TUNING_ROOT="$c")" '* OK *VM*'
put "$c" /sys/devices/system/clocksource/clocksource0/current_clocksource hpet
matches "hpet is WARN" "$(line_of clocksource HONGBAO_TUNING_ROOT="$c")" '* WARN *'
rm -rf "$c"/sys/devices/system/cpu/cpu*/cpufreq
matches "no cpufreq: not exposed, OK" "$(line_of governor HONGBAO_TUNING_ROOT="$c")" '* OK *not exposed (virtual machine)*'
matches "memlock 8 MiB is WARN" "$(line_of memlock HONGBAO_TUNING_ROOT="$c" HONGBAO_TUNING_MEMLOCK=8192)" '* WARN *'
matches "memlock 512 MiB is OK for 2 cores" "$(line_of memlock HONGBAO_TUNING_ROOT="$c" HONGBAO_TUNING_MEMLOCK=524288)" '* OK *'
matches "nofile 20000 is WARN" "$(line_of nofile HONGBAO_TUNING_ROOT="$c" HONGBAO_TUNING_NOFILE=20000)" '* WARN *'
matches "nofile below --connections is WARN" "$(env HONGBAO_TUNING_ROOT="$c" HONGBAO_TUNING_NOFILE=200000 "$here/check" --connections 500000 2>&1 | grep nofile)" '* WARN *'
matches "irqbalance running is WARN" "$(line_of irqbalance HONGBAO_TUNING_ROOT="$c" HONGBAO_TUNING_IRQBALANCE=running)" '* WARN *'
mkdir -p "$c/proc/4242" && echo irqbalance >"$c/proc/4242/comm"
matches "irqbalance found under ROOT/proc" "$(line_of irqbalance HONGBAO_TUNING_ROOT="$c" HONGBAO_TUNING_IRQBALANCE=)" '*running* WARN *'
printf 'Filename\tType\tSize\tUsed\tPriority\n' >"$c/proc/swaps"
matches "no swap: swappiness does not matter" "$(line_of swap HONGBAO_TUNING_ROOT="$c")" '* OK *'
: >"$c/proc/net/route"
matches "no default route: NIC checks skipped" "$(line_of nic HONGBAO_TUNING_ROOT="$c")" '*skipped*'
matches "--cores 1: RPS wants mask 2" "$(env HONGBAO_TUNING_ROOT="$c" "$here/check" --cores 1 --iface eth9 2>&1 | grep rx-0)" '* 2 *'
rc=0
env HONGBAO_TUNING_ROOT="$c" "$here/check" --cores 1-x >/dev/null 2>&1 || rc=$?
expect "bad --cores is a usage error (exit $rc)" test "$rc" = 2

# A virtio interface: its IRQs are named after the device, not the interface.
mkdir -p "$c/sys/devices/pci0000:00/0000:00:03.0/virtio3" "$c/sys/class/net/eth8/queues/rx-0"
ln -s ../../../devices/pci0000:00/0000:00:03.0/virtio3 "$c/sys/class/net/eth8/device"
printf ' 38:   1   2   PCI-MSIX-0000:00:03.0   1-edge   virtio3-input.0\n 39:   3   4   PCI-MSIX-0000:00:03.0   2-edge   virtio3-output.0\n 40:   0   0   PCI-MSIX-0000:00:03.0   0-edge   virtio3-config\n' >>"$c/proc/interrupts"
for irq in 38 39 40; do put "$c" "/proc/irq/$irq/smp_affinity_list" 0-1; done
out=$(HONGBAO_TUNING_ROOT="$c" "$here/check" --iface eth8 2>&1 || true)
if grep -q 'irq 38 (virtio3-input.0)' <<<"$out" && grep -q 'irq 39 (virtio3-output.0)' <<<"$out" && ! grep -q 'irq 40' <<<"$out"; then
  ok "virtio interface: input and output queue IRQs found"
else
  fail "virtio interface IRQs" "$out"
fi

# An interface whose IRQs are found only in its device's msi_irqs: vectors
# 24 26 28 30 are queues 0 to 3, spread over both cores.
mkdir -p "$c/sys/devices/pci0000:00/0000:00:05.0/msi_irqs" "$c/sys/class/net/eth7/queues"
for irq in 24 26 28 30; do
  : >"$c/sys/devices/pci0000:00/0000:00:05.0/msi_irqs/$irq"
  put "$c" "/proc/irq/$irq/smp_affinity_list" 0-1
done
ln -s ../../../devices/pci0000:00/0000:00:05.0 "$c/sys/class/net/eth7/device"
out=$(HONGBAO_TUNING_ROOT="$c" "$here/apply" --iface eth7 2>&1 || true)
plan=$(sed -n 's/^would set irq \([0-9]*\) .*-> \(.*\)$/\1:\2/p' <<<"$out" | tr '\n' ' ')
expect "msi_irqs 24 26 28 30 on two cores: planned 0 1 0 1 ($plan)" test "$plan" = "24:0 26:1 28:0 30:1 "

# Files read after the drop-in at boot undo it: Debian's /etc/sysctl.conf
# (linked as 99-sysctl.conf, read once) and a later sysctl.d file with a bad
# value are warned about; an earlier file, or a later one with a good value,
# is not.
c=$(case_tree)
put "$c" /etc/sysctl.conf "vm.swappiness=60"
put "$c" /etc/sysctl.d/10-early.conf "net.core.somaxconn = 128"
ln -s ../sysctl.conf "$c/etc/sysctl.d/99-sysctl.conf"
put "$c" /usr/lib/sysctl.d/70-late.conf $'# a comment\n-net/core/rmem_max = 4096\nnet.core.wmem_max = 33554432'
out=$(HONGBAO_TUNING_ROOT="$c" "$here/check" 2>&1 || true)
matches "check: a later /etc/sysctl.conf setting swappiness is WARN" "$(grep -F 'vm.swappiness at boot' <<<"$out")" '*60 * WARN *set in /etc/sysctl.conf, read after 60-hongbao.conf*'
expect "check: the linked sysctl.conf is named once" test "$(grep -c 'at boot' <<<"$out")" = 2
matches "check: a later sysctl.d file's slash key is read" "$(grep -F 'net.core.rmem_max at boot' <<<"$out")" '*4096 * WARN *set in /usr/lib/sysctl.d/70-late.conf*'
if grep -q 'somaxconn at boot\|wmem_max at boot' <<<"$out"; then fail "check: an earlier file or a good value is not warned about" "$out"; else ok "check: an earlier file or a good value is not warned about"; fi
out=$(HONGBAO_TUNING_ROOT="$c" "$here/apply" 2>&1 || true)
matches "apply warns that /etc/sysctl.conf wins at boot" "$out" '*not changed by apply: vm.swappiness at boot: 60*/etc/sysctl.conf*'
put "$c" /etc/sysctl.conf "vm.swappiness = 1"
ln -s /dev/null "$c/etc/sysctl.d/70-late.conf"
matches "check: a later file with a good value, or one masked in /etc, is fine" "$(HONGBAO_TUNING_ROOT="$c" "$here/check" 2>&1 | grep -F 'at boot' || echo none)" none

echo "tuning: $passed passed, $failed failed"
((failed == 0))
