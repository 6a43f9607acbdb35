"""The checks behind `nodeagent check` (src/nodeagent/check.py runs them):

- result.py: CheckRow, one verdict with a hint; ok / warn / fail / skip;
- service.py: the systemd unit and the HTTP endpoints;
- node.py: node-local health (GPUs, driver, XIDs, EFA, Lustre);
- kernel_log.py: XIDs from the kernel log (a pure parser and the reader);
- instances.py: this node's instance type (DMI, else instance metadata);
- head.py: Slurm's commands and CloudWatch;
- slurm_health.py: drain and resume for Slurm's HealthCheckProgram.
"""
