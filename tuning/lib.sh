# shellcheck shell=bash disable=SC2034
# (SC2034: the globals set here are read by the scripts that source this.)
# tuning/lib.sh: what tuning/check, tuning/apply and tuning/revert share.
#
# Every knob is judged in one place, evaluate_all, which calls the sourcing
# script's `knob` function once per knob:
#
#   knob NAME CURRENT WANT VERDICT WHY [PATH FIX [SYSCTL]]
#
# VERDICT is OK or WARN. PATH and FIX, when given, are the file apply writes
# and the value it writes; SYSCTL is the key that goes into the drop-in file.
# check prints the knobs, apply writes the fixes of the WARN ones: the two can
# never disagree about what is wrong.
#
# Every path is read and written under HONGBAO_TUNING_ROOT (default: the real
# /), so the tests can run every script against a fake tree. The process
# limits and the irqbalance check read HONGBAO_TUNING_MEMLOCK,
# HONGBAO_TUNING_NOFILE and HONGBAO_TUNING_IRQBALANCE first for the same reason,
# and every path listed in HONGBAO_TUNING_FAIL_WRITES (space-separated, as
# seen under the root) refuses writes, as a managed IRQ's smp_affinity_list
# does with EIO: the tests run as root, whom no file mode stops.

ROOT="${HONGBAO_TUNING_ROOT:-}"
ROOT="${ROOT%/}"
# Where apply keeps every value it changed, one "path:value" line each (the
# value is everything after the first colon, spaces included), and the
# sysctl drop-in it writes so the values survive a reboot.
STATE_PATH=/var/lib/hongbao/tuning.saved
DROPIN_PATH=/etc/sysctl.d/60-hongbao.conf
# Where apply keeps the drop-in it replaced, if one was there.
BACKUP_PATH=/var/lib/hongbao/60-hongbao.conf.saved
# Per-shard locked memory: glommio registers 10 MiB of I/O buffers with
# io_uring per executor (DEFAULT_IO_MEMORY) and maps three 128-entry rings;
# 16 MiB is that, rounded up.
MEMLOCK_PER_SHARD_KIB=16384
# io_uring charges pinned buffers to the user, not the process: every process
# of the user shares the limit, so ask for a floor well above one server.
MEMLOCK_FLOOR_KIB=524288
# Beyond one descriptor per connection: listeners (two per shard), log
# segments, snapshots, eventfds, rings.
NOFILE_HEADROOM=1024
NOFILE_FLOOR=100000

die() {
  printf '%s: %s\n' "${0##*/}" "$*" >&2
  exit 2
}

# The path under the root prefix.
at() {
  printf '%s%s' "$ROOT" "$1"
}

# The content of a file under the root, trailing newlines cut; fails if the
# file is missing or unreadable.
read_value() {
  local file value
  file=$(at "$1")
  [[ -f $file && -r $file ]] || return 1
  value=$(<"$file") 2>/dev/null || return 1
  # Some sysfs files exist but fail every read (xps_cpus of a single-queue
  # device); none of the knobs is legitimately empty.
  [[ -n $value ]] || return 1
  printf '%s' "$value"
}

# The selected word of a kernel choice file ("always [madvise] never" ->
# "madvise"); other values pass through.
choice_of() {
  if [[ $1 =~ \[([^]]*)\] ]]; then
    printf '%s' "${BASH_REMATCH[1]}"
  else
    printf '%s' "$1"
  fi
}

# A choice line with the brackets moved to WORD, as the kernel shows it
# after WORD is written.
choice_line() {
  local line=$1 word=$2 out="" w
  for w in $line; do
    w=${w#[}
    w=${w%]}
    if [[ $w == "$word" ]]; then w="[$w]"; fi
    out+="${out:+ }$w"
  done
  printf '%s' "$out"
}

# Writes VALUE to a file under the root; fails if the write does. A kernel choice file (sysfs) takes
# the bare word and moves its brackets itself; a copy of one in a test tree
# gets the bracketed line the kernel would show, so revert can be checked
# byte for byte.
write_value() {
  local path=$1 value=$2 file current
  if [[ " ${HONGBAO_TUNING_FAIL_WRITES:-} " == *" $path "* ]]; then return 1; fi
  file=$(at "$path")
  current=$(read_value "$path" 2>/dev/null) || current=""
  if [[ $current == *\[*\]* && $(stat -f -c %T "$file" 2>/dev/null) != sysfs ]]; then
    value=$(choice_line "$current" "$value")
  fi
  printf '%s\n' "$value" 2>/dev/null >"$file"
}

# Whether a state file line names only what apply writes: a value under
# /proc/sys/, /proc/irq/ or /sys/ (no . or .. on the way), the drop-in, its
# backup, or a directory on their way. revert writes as root wherever the
# line says, so a line that names anything else is refused.
state_line_ok() {
  local line=$1 path file backup dir
  case $line in
    "#created "*) [[ ${line#\#created } == "$DROPIN_PATH" ]] ;;
    "#backup "*)
      read -r file backup <<<"${line#\#backup }"
      [[ $file == "$DROPIN_PATH" && $backup == "$BACKUP_PATH" ]]
      ;;
    "#mkdir "*)
      dir=${line#\#mkdir }
      [[ $dir == /* ]] || return 1
      for path in "$(dirname "$STATE_PATH")" "$(dirname "$DROPIN_PATH")"; do
        while [[ $path != / ]]; do
          if [[ $path == "$dir" ]]; then return 0; fi
          path=$(dirname "$path")
        done
      done
      return 1
      ;;
    \#* | "") return 0 ;;
    *)
      path=${line%%:*}
      [[ $line == *:* && $path =~ ^/(proc/sys|proc/irq|sys)/[^/] && /$path/ != */../* && /$path/ != */./* && $path != *//* ]]
      ;;
  esac
}

# "0-2,5" -> "0 1 2 5"; fails on anything else.
expand_cpus() {
  local item a b i
  local -a items out=()
  IFS=, read -ra items <<<"$1"
  for item in "${items[@]}"; do
    item=${item//[[:space:]]/}
    if [[ -z $item ]]; then continue; fi
    if [[ $item =~ ^([0-9]+)-([0-9]+)$ ]]; then
      a=$((10#${BASH_REMATCH[1]}))
      b=$((10#${BASH_REMATCH[2]}))
      if ((a > b)); then return 1; fi
      for ((i = a; i <= b; i++)); do out+=("$i"); done
    elif [[ $item =~ ^[0-9]+$ ]]; then
      out+=("$((10#$item))")
    else
      return 1
    fi
  done
  if ((${#out[@]} == 0)); then return 1; fi
  printf '%s' "${out[*]}"
}

# "0 1 33" -> "2,00000003": the kernel's hex CPU mask, 32 bits a group.
cpus_mask() {
  local c w top=0 out
  local -a words=()
  for c in $1; do
    w=$((c / 32))
    words[w]=$((${words[w]:-0} | (1 << (c % 32))))
    if ((w > top)); then top=$w; fi
  done
  out=$(printf '%x' "${words[top]:-0}")
  for ((w = top - 1; w >= 0; w--)); do out+=$(printf ',%08x' "${words[w]:-0}"); done
  printf '%s' "$out"
}

# A mask in a form two masks can be compared in: no commas, no leading zeros.
norm_mask() {
  local m=${1//,/}
  m=${m,,}
  while [[ $m == 0* ]]; do m=${m#0}; done
  printf '%s' "${m:-0}"
}

# The online CPUs under the root ("0 1 2 3").
online_cpus() {
  local online
  online=$(read_value /sys/devices/system/cpu/online) || online=0
  expand_cpus "$online"
}

# The interface of the default route, from /proc/net/route.
default_iface() {
  local route
  route=$(at /proc/net/route)
  [[ -r $route ]] || return 0
  awk 'NR > 1 && $2 == "00000000" { print $1; exit }' "$route"
}

# The interface's queue IRQs, "IRQ QUEUE NAME" a line. Tried in order: the
# /proc/interrupts lines whose name contains the interface as a word
# (eth0-TxRx-0), the input and output queues of a virtio device
# (virtio2-input.0), then the device's msi_irqs. QUEUE is the number the
# name ends in (so a queue's rx and tx IRQs share it), else the IRQ's place
# in the list: msi_irqs names only vectors, which need not be consecutive
# (24 26 28 30 are queues 0 to 3, not four even queues).
iface_irqs() {
  local iface=$1 interrupts dev base found irq q=0
  interrupts=$(at /proc/interrupts)
  [[ -r $interrupts ]] || return 0
  found=$(awk -v ifc="$iface" '
    function named(s,   p, before, after) {
      p = index(s, ifc)
      if (p == 0) return 0
      before = p == 1 ? "" : substr(s, p - 1, 1)
      after = substr(s, p + length(ifc), 1)
      return before !~ /[[:alnum:]]/ && after !~ /[[:alnum:]]/
    }
    $1 ~ /^[0-9]+:$/ && named($NF) { print substr($1, 1, length($1) - 1), $NF }
  ' "$interrupts")
  if [[ -z $found && -e $(at "/sys/class/net/$iface/device") ]]; then
    dev=$(readlink -f "$(at "/sys/class/net/$iface/device")")
    base=${dev##*/}
    if [[ $base =~ ^virtio[0-9]+$ ]]; then
      found=$(awk -v dev="$base" '
        $1 ~ /^[0-9]+:$/ && (index($NF, dev "-input.") == 1 || index($NF, dev "-output.") == 1) {
          print substr($1, 1, length($1) - 1), $NF
        }' "$interrupts")
    fi
  fi
  if [[ -n $found ]]; then
    awk '{ n++; print $1, (match($2, /[0-9]+$/) ? substr($2, RSTART) + 0 : n - 1), $2 }' <<<"$found"
    return 0
  fi
  if [[ -d $(at "/sys/class/net/$iface/device/msi_irqs") ]]; then
    for irq in "$(at "/sys/class/net/$iface/device/msi_irqs")"/*; do
      if [[ -e $irq ]]; then printf '%s\n' "${irq##*/}"; fi
    done | sort -n | while read -r irq; do
      printf '%s %d msi-%s\n' "$irq" "$q" "$irq"
      q=$((q + 1))
    done
  fi
}

# The name /proc/interrupts gives IRQ N (its last word: eth9-TxRx-1), empty
# if it has no line. apply saves it with the IRQ's affinity: after a reboot
# or a driver reload the number may belong to another device.
irq_name() {
  local interrupts
  interrupts=$(at /proc/interrupts)
  [[ -r $interrupts ]] || return 0
  awk -v irq="$1:" '$1 == irq { print $NF; exit }' "$interrupts"
}

# Whether irqbalance runs: HONGBAO_TUNING_IRQBALANCE, else a process named
# irqbalance under ROOT/proc.
irqbalance_state() {
  local comm
  if [[ -n ${HONGBAO_TUNING_IRQBALANCE:-} ]]; then
    printf '%s' "$HONGBAO_TUNING_IRQBALANCE"
    return
  fi
  for comm in "$(at /proc)"/[0-9]*/comm; do
    if [[ -r $comm && $(<"$comm") == irqbalance ]] 2>/dev/null; then
      printf running
      return
    fi
  done
  printf stopped
}

# A limit ("unlimited" or KiB/count) at least WANT?
limit_at_least() {
  [[ $1 == unlimited || ($1 =~ ^[0-9]+$ && $1 -ge $2) ]]
}

# The sysctl files read at boot after the drop-in, in the order they are
# read: the *.conf files of the sysctl.d directories whose names sort after
# 60-hongbao.conf (a name in an earlier directory hides the same name in a
# later one, also when it is a link to /dev/null), then /etc/sysctl.conf,
# which procps's `sysctl --system` reads last and Debian links as
# 99-sysctl.conf for systemd-sysctl. The last file that sets a key wins, so
# any of these can undo the drop-in at boot. Each file is named once, by
# where it really is (under the root).
SYSCTL_DIRS=(/etc/sysctl.d /run/sysctl.d /usr/local/lib/sysctl.d /usr/lib/sysctl.d /lib/sysctl.d)
later_sysctl_files() {
  local dir file name real root_real
  local -A dir_of=() seen=()
  root_real=$(readlink -f "${ROOT:-/}")
  root_real=${root_real%/}
  for dir in "${SYSCTL_DIRS[@]}"; do
    for file in "$(at "$dir")"/*.conf; do
      [[ -e $file || -L $file ]] || continue
      name=${file##*/}
      if [[ -z ${dir_of[$name]:-} ]]; then dir_of[$name]=$dir; fi
    done
  done
  while IFS= read -r file; do
    [[ -n $file && -f $file && -r $file ]] || continue
    real=$(readlink -f "$file") || continue
    [[ $real == "$root_real"/* && -z ${seen[$real]:-} ]] || continue
    seen[$real]=1
    printf '%s\n' "$ROOT${real#"$root_real"}"
  done < <(
    printf '%s\n' "${!dir_of[@]}" | LC_ALL=C sort | LC_ALL=C awk -v ours="${DROPIN_PATH##*/}" '$0 > ours' |
      while IFS= read -r name; do at "${dir_of[$name]}/$name"; echo; done
    at /etc/sysctl.conf
    echo
  )
}

# "VALUE<tab>FILE" of the last file after the drop-in that sets KEY (FILE
# as seen under the root), nothing if none does.
boot_override() {
  local key=$1 file
  local -a files=()
  while IFS= read -r file; do files+=("$file"); done < <(later_sysctl_files)
  ((${#files[@]})) || return 0
  awk -v key="$key" -v root="$ROOT" '
    {
      line = $0
      sub(/^[ \t]+/, "", line)
      if (line == "" || line ~ /^[#;]/ || index(line, "=") == 0) next
      k = substr(line, 1, index(line, "=") - 1)
      v = substr(line, index(line, "=") + 1)
      gsub(/^[ \t-]+|[ \t]+$/, "", k)
      gsub(/^[ \t]+|[ \t]+$/, "", v)
      gsub("/", ".", k)
      if (k == key) { last = v "\t" substr(FILENAME, length(root) + 1) }
    }
    END { if (last != "") print last }
  ' "${files[@]}" 2>/dev/null || true
}

# Whether VALUE is what hongbao wants: MODE min (at least WANT), max (at
# most WANT) or eq (exactly WANT).
value_ok() {
  local value=$1 mode=$2 want=$3
  case $mode in
    min) [[ $value =~ ^[0-9]{1,18}$ ]] && ((10#$value >= want)) ;;
    max) [[ $value =~ ^[0-9]{1,18}$ ]] && ((10#$value <= want)) ;;
    eq) [[ $value == "$want" ]] ;;
    *) return 1 ;;
  esac
}

# A WARN line for KEY if a file read after the drop-in at boot sets it to a
# value value_ok MODE WANT rejects: that file, not apply's, wins at boot.
# SHOWN is how check shows the wanted value.
boot_check() {
  local key=$1 mode=$2 want=$3 shown=$4 found value file
  found=$(boot_override "$key")
  [[ -n $found ]] || return 0
  value=${found%$'\t'*}
  file=${found##*$'\t'}
  if ! value_ok "$value" "$mode" "$want"; then
    knob "$key at boot" "$value" "$shown" WARN "set in $file, read after ${DROPIN_PATH##*/}: it wins at boot; change it there"
  fi
}

# A sysctl that must be at least WANT.
sysctl_min() {
  local key=$1 want=$2 why=$3 path cur
  path=/proc/sys/${key//.//}
  if ! cur=$(read_value "$path"); then
    knob "$key" absent ">= $want" OK "not in this kernel; $why"
    return 0
  elif [[ $cur =~ ^[0-9]+$ ]] && ((cur >= want)); then
    knob "$key" "$cur" ">= $want" OK "$why"
  else
    knob "$key" "$cur" ">= $want" WARN "$why" "$path" "$want" "$key"
  fi
  boot_check "$key" min "$want" ">= $want"
}

# A sysctl that should be exactly WANT.
sysctl_eq() {
  local key=$1 want=$2 why=$3 path cur
  path=/proc/sys/${key//.//}
  if ! cur=$(read_value "$path"); then
    knob "$key" absent "$want" OK "not in this kernel; $why"
    return 0
  elif [[ $cur == "$want" ]]; then
    knob "$key" "$cur" "$want" OK "$why"
  else
    knob "$key" "$cur" "$want" WARN "$why" "$path" "$want" "$key"
  fi
  boot_check "$key" eq "$want" "$want"
}

# Judges every knob for shard CORES ("0 1"), interface IFACE ("" = none) and
# CONNECTIONS connections, calling knob once per line.
evaluate_all() {
  local cores=$1 iface=$2 connections=$3
  local -a core_list
  read -ra core_list <<<"$cores"
  local ncores=${#core_list[@]}
  local cur want path

  # Process limits (of this shell; the service gets its own from the unit).
  cur=${HONGBAO_TUNING_MEMLOCK:-$(ulimit -l)}
  want=$((ncores * MEMLOCK_PER_SHARD_KIB))
  if ((want < MEMLOCK_FLOOR_KIB)); then want=$MEMLOCK_FLOOR_KIB; fi
  if limit_at_least "$cur" "$want"; then
    knob "memlock (ulimit -l, KiB)" "$cur" "unlimited|>=$want" OK "io_uring buffers: 16 MiB/shard, charged per user"
  else
    knob "memlock (ulimit -l, KiB)" "$cur" "unlimited|>=$want" WARN "io_uring buffers: 16 MiB/shard, charged per user; LimitMEMLOCK=infinity"
  fi
  cur=${HONGBAO_TUNING_NOFILE:-$(ulimit -n)}
  want=$((connections + NOFILE_HEADROOM))
  if ((want < NOFILE_FLOOR)); then want=$NOFILE_FLOOR; fi
  if limit_at_least "$cur" "$want"; then
    knob "nofile (ulimit -n)" "$cur" ">=$want" OK "one fd per connection + logs, listeners"
  else
    knob "nofile (ulimit -n)" "$cur" ">=$want" WARN "one fd per connection + logs, listeners; LimitNOFILE=1048576"
  fi

  # io_uring itself.
  if ! cur=$(read_value /proc/sys/kernel/io_uring_disabled); then
    knob kernel.io_uring_disabled absent 0 OK "kernel before 6.6: io_uring always enabled"
  elif [[ $cur == 0 ]]; then
    knob kernel.io_uring_disabled "$cur" 0 OK "hongbao does all I/O through io_uring"
  else
    knob kernel.io_uring_disabled "$cur" 0 WARN "shards cannot start (1: only kernel.io_uring_group); apply leaves this security choice to you"
  fi

  # Accept queues and socket buffers.
  sysctl_min net.core.somaxconn 4096 "accept queue for a storm of connects"
  sysctl_min net.ipv4.tcp_max_syn_backlog 8192 "half-open connections during a connect storm"
  sysctl_min net.core.rmem_max 16777216 "lets pipelined connections grow receive buffers"
  sysctl_min net.core.wmem_max 16777216 "lets pipelined connections grow send buffers"
  sysctl_eq net.core.busy_poll 0 "poll/epoll busy-wait; shards already spin (--spin-us)"
  sysctl_eq net.core.busy_read 0 "blocking-read busy-wait; io_uring shards gain nothing"

  # Memory.
  path=/sys/kernel/mm/transparent_hugepage/enabled
  if ! cur=$(read_value "$path"); then
    knob "transparent hugepages" absent "madvise|never" OK "not in this kernel"
  else
    cur=$(choice_of "$cur")
    if [[ $cur == madvise || $cur == never ]]; then
      knob "transparent hugepages" "$cur" "madvise|never" OK "no compaction stalls on page faults"
    else
      knob "transparent hugepages" "$cur" "madvise|never" WARN "always: page faults may stall on compaction (ms)" "$path" madvise
    fi
  fi
  local swaps=0
  if [[ -r $(at /proc/swaps) ]]; then
    swaps=$(awk 'NR > 1 && NF' "$(at /proc/swaps)" | wc -l)
  fi
  cur=$(read_value /proc/sys/vm/swappiness) || cur=absent
  if ((swaps == 0)); then
    knob "swap / vm.swappiness" "no swap, $cur" "no swap|<=1" OK "nothing can be swapped out"
  elif [[ $cur =~ ^[0-9]+$ ]] && ((cur <= 1)); then
    knob "swap / vm.swappiness" "$swaps swap, $cur" "no swap|<=1" OK "envelopes stay in RAM"
  else
    knob "swap / vm.swappiness" "$swaps swap, $cur" "no swap|<=1" WARN "a swapped-out shard stalls every connection it owns" /proc/sys/vm/swappiness 1 vm.swappiness
  fi
  if ((swaps > 0)) && [[ $cur != absent ]]; then
    boot_check vm.swappiness max 1 "<=1"
  fi

  # CPUs.
  local core exposed=0 avail
  for core in "${core_list[@]}"; do
    path=/sys/devices/system/cpu/cpu$core/cpufreq/scaling_governor
    cur=$(read_value "$path") || continue
    exposed=1
    if [[ $cur == performance ]]; then
      knob "cpu$core governor" "$cur" performance OK "no ramp-up delay after a quiet moment"
    else
      avail=$(read_value "/sys/devices/system/cpu/cpu$core/cpufreq/scaling_available_governors") || avail=performance
      if [[ " $avail " == *" performance "* ]]; then
        knob "cpu$core governor" "$cur" performance WARN "clock ramps up only after the burst began" "$path" performance
      else
        knob "cpu$core governor" "$cur" performance WARN "performance not offered (available: $avail)"
      fi
    fi
  done
  if ((exposed == 0)); then
    knob "cpu governor" "not exposed" performance OK "not exposed (virtual machine): the host decides"
  fi
  cur=$(read_value /sys/devices/system/clocksource/clocksource0/current_clocksource) || cur=absent
  case $cur in
    tsc | arch_sys_counter) knob clocksource "$cur" tsc OK "timestamps read in user space (vDSO), ns" ;;
    absent) knob clocksource absent tsc OK "not exposed" ;;
    kvm-clock) knob clocksource "$cur" tsc OK "acceptable in a VM (vDSO-readable); tsc if the host offers a stable one" ;;
    *) knob clocksource "$cur" tsc WARN "every clock read is a slow path; apply does not change it (see TUNING.md)" ;;
  esac

  # The NIC.
  if [[ -z $iface ]]; then
    knob "nic" none "--iface" OK "skipped: no default route (pass --iface NAME)"
    return 0
  fi
  if [[ ! -e $(at "/sys/class/net/$iface") ]]; then
    knob "nic $iface" missing present WARN "no such interface"
    return 0
  fi
  local irqs irq name q
  irqs=$(iface_irqs "$iface")
  cur=$(irqbalance_state)
  if [[ $cur == running && -n $irqs ]]; then
    knob irqbalance "$cur" stopped WARN "it moves the IRQs apply pins (systemctl disable --now irqbalance)"
  else
    knob irqbalance "$cur" "stopped" OK "IRQs stay where they are pinned"
  fi
  if [[ -z $irqs ]]; then
    knob "$iface irqs" none "one per core" OK "no queue IRQs found (virtual or software interface)"
  fi
  while read -r irq q name; do
    [[ -n $irq ]] || continue
    want=${core_list[q % ncores]}
    path=/proc/irq/$irq/smp_affinity_list
    cur=$(read_value "$path") || continue
    local got
    got=$(expand_cpus "$cur") || got=""
    if [[ $got =~ ^[0-9]+$ && " $cores " == *" $got "* ]]; then
      knob "irq $irq ($name) affinity" "$cur" "one shard core" OK "softirq work on a shard core, one queue each"
    else
      knob "irq $irq ($name) affinity" "$cur" "$want" WARN "spread one queue per shard core" "$path" "$want"
    fi
  done <<<"$irqs"
  local queue all_mask ntx i
  all_mask=$(cpus_mask "$cores")
  for queue in "$(at "/sys/class/net/$iface/queues")"/rx-*; do
    path=${queue#"$ROOT"}/rps_cpus
    cur=$(read_value "$path") || continue
    if [[ $(norm_mask "$cur") == "$(norm_mask "$all_mask")" ]]; then
      knob "$iface ${queue##*/} rps_cpus" "$cur" "$all_mask" OK "packet processing spread over the shard cores"
    else
      knob "$iface ${queue##*/} rps_cpus" "$cur" "$all_mask" WARN "spread packet processing over the shard cores" "$path" "$all_mask"
    fi
  done
  local -a txq=()
  for queue in "$(at "/sys/class/net/$iface/queues")"/tx-*; do
    [[ -e $queue ]] && txq+=("$queue")
  done
  ntx=${#txq[@]}
  for queue in "${txq[@]}"; do
    path=${queue#"$ROOT"}/xps_cpus
    cur=$(read_value "$path") || continue
    q=${queue##*tx-}
    local mine=""
    for ((i = 0; i < ncores; i++)); do
      if ((i % ntx == q % ntx)); then mine+="${mine:+ }${core_list[i]}"; fi
    done
    want=$(cpus_mask "$mine")
    if [[ -z $mine ]]; then want=0; fi
    if [[ $(norm_mask "$cur") == "$(norm_mask "$want")" ]]; then
      knob "$iface ${queue##*/} xps_cpus" "$cur" "$want" OK "each core sends on its own queue"
    else
      knob "$iface ${queue##*/} xps_cpus" "$cur" "$want" WARN "each core should send on its own queue" "$path" "$want"
    fi
  done
}

# Parses the flags every script shares into CORES, IFACE and CONNECTIONS;
# script-specific flags are handled by the script's own `extra_flag` (which
# returns 1 for a flag it does not know).
parse_common() {
  CORES="" IFACE="" IFACE_SET=0 CONNECTIONS=10000
  while (($#)); do
    case $1 in
      --cores) (($# >= 2)) || die "--cores needs a list"; CORES=$2; shift 2 ;;
      --iface) (($# >= 2)) || die "--iface needs a name"; IFACE=$2; IFACE_SET=1; shift 2 ;;
      --connections)
        if (($# < 2)) || [[ ! $2 =~ ^[0-9]+$ ]]; then die "--connections needs a number"; fi
        CONNECTIONS=$2
        shift 2
        ;;
      -h | --help) usage; exit 0 ;;
      *)
        if extra_flag "$1"; then shift; else die "unknown flag $1 (try --help)"; fi
        ;;
    esac
  done
  if [[ -n $CORES ]]; then
    CORES=$(expand_cpus "$CORES") || die "--cores: cannot read $CORES (expected N or N-M, comma-separated)"
  else
    CORES=$(online_cpus) || die "cannot read the online CPUs"
  fi
  if ((IFACE_SET == 0)); then IFACE=$(default_iface); fi
}
