"""Test and production clusters of the appliance: create nodes, provision them, run commands on them.

Why a package: ``playbooks/site.yml`` is the single description of a deployment; this package
is the thin shell around it. ``inventory`` reads Ansible inventories into plain values;
``containers`` makes local container "nodes" from the locked base image (no VMs, no network);
``provision`` runs the playbook through ansible-runner and turns its events into a progress bar
and a result value; ``nodes`` runs ad-hoc commands on every node (Fabric over SSH, ``docker
exec`` for container nodes); ``cli`` wires it into ``appliance cluster``.
"""
