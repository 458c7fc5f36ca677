# shellcheck shell=dash
# selftest-fail: proves a failing check fails the scenario. Registered in
# meson.build with should_fail: true, so the suite passes only if it fails.
# timeout: 60

check "true passes" true
check "false is reported as a failure (expected)" false
check_eq "check_eq passes" same same
