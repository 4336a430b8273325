"""State building block: contract.py, keys.py (key scheme), query.py, service.py."""
