# Sourced by scripts/relay and bin/agent-relay: relay_package_root PLUGIN_ROOT prints the agent-relay
# package this plugin belongs to (the directory with bin/agent-relay.js), or nothing; relay_other_cli
# PLUGIN_ROOT prints an agent-relay on PATH that is not this plugin's own bin/agent-relay, or nothing.
# - Run from the package (`claude --plugin-dir .../adapters/claude/plugin`): three levels up.
#   Claude Code 2.1.197 also runs a plugin installed from a local directory marketplace in place.
# - Run from a copy in Claude's plugin cache, <plugins>/cache/<marketplace>/<plugin>/<version>/ (which
#   `claude plugin install` leaves): <plugins>/known_marketplaces.json gives the marketplace's
#   installLocation, which is the package when the marketplace is its checkout.
relay_package_root() {
  # Normalized first: dirname below works on the text, and "$here/.." ends in "..".
  _p=$(CDPATH= cd -- "$1" 2>/dev/null && pwd) || return 0
  if [ -f "$_p/../../../bin/agent-relay.js" ]; then
    (CDPATH= cd -- "$_p/../../.." && pwd)
    return 0
  fi
  _market=$(basename -- "$(dirname -- "$(dirname -- "$_p")")")
  _known="$(dirname -- "$(dirname -- "$(dirname -- "$(dirname -- "$_p")")")")/known_marketplaces.json"
  [ -f "$_known" ] || return 0
  command -v node >/dev/null 2>&1 || return 0
  _loc=$(node -e 'try { const m = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))[process.argv[2]]; if (m && typeof m.installLocation === "string") process.stdout.write(m.installLocation); } catch {}' "$_known" "$_market" 2>/dev/null)
  if [ -n "$_loc" ] && [ -f "$_loc/bin/agent-relay.js" ]; then
    printf '%s\n' "$_loc"
  fi
  return 0
}

relay_other_cli() {
  _own=$(CDPATH= cd -- "$1/bin" 2>/dev/null && pwd)
  _rest=
  _ifs=$IFS
  IFS=:
  for _d in $PATH; do
    [ -n "$_d" ] || continue
    _dd=$(CDPATH= cd -- "$_d" 2>/dev/null && pwd) || continue
    [ "$_dd" = "$_own" ] && continue
    _rest="${_rest:+$_rest:}$_d"
  done
  IFS=$_ifs
  PATH="$_rest" command -v agent-relay 2>/dev/null
  return 0
}
