"""Whether the rig runs what was provisioned or waits for a reboot to apply it (the mark in
/var/lib/rigctl/reboot-required, rigctl.core.reboot). A pending reboot is a visible `warn`,
never a failure: the rig works, with its old kernel command line or module until then."""

from rigctl.core import reboot
from rigctl.verify.checks import expect


def test_no_reboot_pending(rig_facts):
    mark = rig_facts.get("reboot") or reboot.describe(None, False)
    expect(
        not mark["required"],
        "no reboot pending",
        expected="nothing waiting for a reboot",
        found=f"reboot needed since {mark.get('since') or '?'}: {'; '.join(mark['reasons'])}",
        fix="reboot the rig when it is idle (`sudo systemctl reboot`; on a lab rig `rigctl lab "
        "restart RIG`): the mark clears at the next boot",
        warn=True,
    )
