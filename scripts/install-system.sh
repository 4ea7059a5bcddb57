#!/usr/bin/env bash
# Installs the Debian packages twinstream needs, only those that are missing:
# the asterisk speech data, Java + Maven (to resolve and run Apache Kafka) and, for the
# test suite, PostgreSQL, a JDK, chromium with its driver and two more asterisk voices; for
# the benchmarks, the other voices of the unseen-speaker evaluation (pipeline/data/speakers.py).
# Idempotent: a second run installs nothing.
set -euo pipefail

want=(asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav
      asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav asterisk-prompt-it-menardi-wav)
command -v java >/dev/null || want+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || want+=(maven)
if [[ "${1:-}" == "--test" || "${1:-}" == "--bench" ]]; then
  want+=(asterisk-prompt-es-co asterisk-prompt-fr-armelle)
fi
if [[ "${1:-}" == "--test" ]]; then
  command -v pg_ctlcluster >/dev/null || want+=(postgresql)
  # The codec tests run a Java producer from its source file, which needs the JDK's compiler.
  [[ "$(java --list-modules 2>/dev/null || true)" == *jdk.compiler@* ]] || want+=(openjdk-17-jdk-headless)
  # The console tests drive Debian's headless chromium through its chromedriver: Selenium
  # is pointed at both, so no browser is ever downloaded.
  want+=(chromium chromium-driver)
fi
if [[ "${1:-}" == "--bench" ]]; then
  want+=(klettres-data ktuberling-data fillets-ng-data-cs fillets-ng-data-nl)
fi

missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
# Without --no-install-recommends the Menardi prompts pull in the Asterisk server.
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
