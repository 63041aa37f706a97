# shellcheck shell=bash
# lib-check.sh: the check helpers of the guest scripts (sourced). Set
# CHECK_NAME first; every check prints "[NAME] ok|FAIL  DESCRIPTION", and
# checks_done prints the verdict and exits 1 when one failed.

failed=0

# check DESCRIPTION COMMAND...: run COMMAND, record and print the result.
check() {
	local what=$1
	shift
	if "$@"; then
		printf '[%s] ok    %s\n' "$CHECK_NAME" "$what"
	else
		printf '[%s] FAIL  %s\n' "$CHECK_NAME" "$what"
		failed=1
	fi
}

checks_done() {
	if [[ $failed == 0 ]]; then
		echo "[$CHECK_NAME] all checks passed"
	else
		echo "[$CHECK_NAME] some checks FAILED"
	fi
	exit "$failed"
}
