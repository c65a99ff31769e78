"""Independent verifier for regiongate's JWT grants (tests/it/grants.rs): PyJWT checks a token
against a JWKS document, the way Envoy's jwt_authn with remote_jwks would.

usage: jwt_verify.py JWKS_FILE TOKEN_FILE AUDIENCE ISSUER
Prints the verified claims as JSON and exits 0; prints the PyJWT error and exits 1.
"""
import json
import sys

import jwt


def main():
    jwks_file, token_file, audience, issuer = sys.argv[1:5]
    with open(jwks_file) as f:
        jwks = jwt.PyJWKSet.from_dict(json.load(f))
    with open(token_file) as f:
        token = f.read().strip()
    try:
        kid = jwt.get_unverified_header(token)["kid"]
        keys = [k for k in jwks.keys if k.key_id == kid]
        if not keys:
            raise jwt.InvalidKeyError("no key " + kid)
        claims = jwt.decode(
            token,
            keys[0].key,
            algorithms=["EdDSA"],
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
        )
    except Exception as e:  # every PyJWT failure is a refusal
        print(type(e).__name__ + ": " + str(e))
        return 1
    print(json.dumps(claims, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
