"""The power budget rule of `rigctl inventory check` (rigctl/inventory/power_budget.py, the
arithmetic of rigctl.core.health.power_budget): the seed rig is refused by default, limits over the budget
are refused at the line of rig_power_limit_w with the sum and the fix, lists of PSUs add up,
values the rule cannot read skip it."""

from __future__ import annotations

from rigctl import inventory as inv_mod
from rigctl.inventory import power_budget

from .inventory_helpers import EXAMPLE, write


def _problems(tmp_path, host_vars: str):
    write(tmp_path, {"hosts.yml": """\
        all:
          children:
            rigs:
              hosts:
                rig-a:
                  ansible_host: 192.0.2.10
        """, "host_vars/rig-a.yml": host_vars})
    return inv_mod.check(inv_mod.load([str(tmp_path / "hosts.yml")]))


def test_seed_rig_six_270w_on_one_1600w_psu_is_refused_by_default(tmp_path):
    """The seed rig: 6 x 270 W = 1620 W on one 1600 W supply is over the default budget
    (90% of the rating); the fix names the limit that fits, and an owner who raises the
    load percent on purpose passes."""
    seed = "rig_gpu_count: 6\nrig_power_limit_w: 270\nrig_psu_watts: 1600\n"
    (p,) = inv_mod.errors_of(_problems(tmp_path, seed))
    assert p.key == "rig_power_limit_w"
    assert "1620 W against 1440 W (90% of 1600 W PSU), 180 W over" in p.message
    assert p.fix.startswith("lower rig_power_limit_w to at most 240 W")
    assert _problems(tmp_path, seed + "rig_psu_max_load_percent: 105\n") == []


def test_limits_over_the_budget_are_refused_with_the_sum_and_the_fix(tmp_path):
    problems = _problems(tmp_path, (
        "rig_gpu_count: 6\nrig_psu_watts: 1600\nrig_platform_watts: 200\n"
        "rig_power_limit_w: 270\nrig_power_limit_overrides: {\"0\": 300}\n"
        "rig_psu_max_load_percent: 105\n"))
    (p,) = inv_mod.errors_of(problems)
    assert p.line == 4 and p.file.endswith("rig-a.yml") and p.key == "rig_power_limit_w"
    assert p.message == ("the GPUs' power limits exceed the PSU budget: 6 GPU limits 1650 W + "
                         "platform 200 W = 1850 W against 1680 W (105% of 1600 W PSU), 170 W over")
    assert p.fix.startswith("lower rig_power_limit_w to at most 236 W, add a PSU to rig_psu_watts")


def test_two_psus_and_a_stricter_load_percent(tmp_path):
    base = "rig_gpu_count: 6\nrig_power_limit_w: 330\nrig_psu_watts: [1600, 1000]\nrig_platform_watts: 250\n"
    assert _problems(tmp_path, base) == []
    (p,) = _problems(tmp_path, base + "rig_psu_max_load_percent: 80\n")
    assert "2230 W against 2080 W (80% of 2600 W PSU)" in p.message


def test_rule_needs_count_limit_and_psu():
    def val(values):
        return lambda name: values.get(name, 90 if name == "rig_psu_max_load_percent" else None)

    assert power_budget.problems(val({"rig_power_limit_w": 400, "rig_psu_watts": 1000})) == []
    assert power_budget.problems(val({"rig_gpu_count": 6, "rig_psu_watts": 1000})) == []
    assert power_budget.problems(val({"rig_gpu_count": 6, "rig_power_limit_w": 400})) == []
    templated = {"rig_gpu_count": 6, "rig_power_limit_w": "{{ limit }}", "rig_psu_watts": 1000}
    assert power_budget.problems(val(templated)) == []
    assert power_budget.planned_limits(3, 300, {"1": 250}) == [250, 300, 300]
    assert power_budget.planned_limits(2, 300, {"0": "{{ x }}"}) is None
    assert power_budget.psu_watts_problem([1600, 1000]) is None
    assert power_budget.psu_watts_problem([]) == (
        "an empty list of PSUs", "write one rating like 1600, or one per PSU like [1600, 1000]")


def test_example_inventory_sets_the_budget_and_fits_it():
    inv = inv_mod.load([str(EXAMPLE)])
    assert inv_mod.errors_of(inv_mod.check(inv)) == []
    assert inv.resolved("rig-epyc-1")["rig_psu_watts"].value == [1600, 1000]
