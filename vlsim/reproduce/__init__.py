"""Reproduce the VL Norm paper's four claims at toy scale on policies vlsim trains itself.

- `spec`: ReproduceConfig and the shipped scales (tiny for tests, quick, full);
- `plan`: the reproduction as two named sweeps (probed runs per preset; claim 4's race);
- `execute`: running them in the store (resumable; a line per run);
- `collect`: reading the finished runs back;
- `claim_noise`, `claim_bias`, `claim_speed`: each claim's numbers, intervals and verdict,
  pure functions of stored records (`verdict`: the three answers and how they combine);
- `estimate`, `machine`: what a reproduction costs and where it ran;
- `report`, `markdown`: the report as JSON and markdown.

`python -m vlsim reproduce` (vlsim/cli_reproduce.py) runs it all. Never imports Streamlit.
"""

from vlsim.reproduce.execute import Execution, run_all
from vlsim.reproduce.markdown import markdown
from vlsim.reproduce.plan import plan_summary, probe_spec, speed_spec, sweeps
from vlsim.reproduce.report import (
    build_report,
    claim_numbers,
    latest_report,
    read_json,
    report_paths,
    write_json,
)
from vlsim.reproduce.spec import SCALES, ReproduceConfig, scale_config
from vlsim.reproduce.verdict import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, VERDICTS

__all__ = [
    "INCONCLUSIVE", "NOT_REPRODUCED", "REPRODUCED", "SCALES", "VERDICTS", "Execution",
    "ReproduceConfig", "build_report", "claim_numbers", "latest_report", "markdown",
    "plan_summary", "probe_spec", "read_json", "report_paths", "run_all", "scale_config",
    "speed_spec", "sweeps", "write_json",
]  # fmt: skip
