"""Security translation: mTLS transport sockets (tls.py, mtls.py), RBAC (rbac.py) and jwt_authn (jwt.py)."""
