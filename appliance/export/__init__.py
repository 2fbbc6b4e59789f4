"""Preservation: a run as a Workflow Run RO-Crate (``rocrate_export``) and as a self-contained
bundle (``bundle``: image tar + inputs + outputs + recipe snapshot + record) that ``appliance
import`` restores on a machine with no registry and no network.
"""
