"""Mecha control plane: declarative YAML -> model -> graph validation -> translate -> snapshots -> xDS."""
