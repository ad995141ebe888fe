"""The data plane: handlers deployed as Lambda functions (standard library + boto3 only)."""
