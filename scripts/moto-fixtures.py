# Test and demo fixtures for moto_server (argument: its URL): buckets
# alice-bucket and bob-bucket, roles alice-data and bob-data that may use only
# their own bucket (trust principal "*": moto accepts no other form), a role
# "locked" nobody may assume, and the IAM user airlock-meta whose access key
# (printed as JSON) plays the worker's meta identity.
import json, sys, boto3
url = sys.argv[1]
kw = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
iam, s3 = boto3.client("iam", **kw), boto3.client("s3", **kw)
def trust(principal):
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"},
        {"Effect": "Allow", "Principal": {"Federated": "arn:aws:iam::123456789012:saml-provider/corp"}, "Action": "sts:AssumeRoleWithSAML"}]})
for user in ["alice", "bob"]:
    bucket = user + "-bucket"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="hello.txt", Body=(user + " data").encode())
    iam.create_role(RoleName=user + "-data", AssumeRolePolicyDocument=trust("*"))
    iam.put_role_policy(RoleName=user + "-data", PolicyName="own-bucket", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*",
        "Resource": ["arn:aws:s3:::" + bucket, "arn:aws:s3:::" + bucket + "/*"]}]}))
iam.create_role(RoleName="locked", AssumeRolePolicyDocument=trust("arn:aws:iam::123456789012:user/nobody"))
iam.create_user(UserName="airlock-meta")
iam.put_user_policy(UserName="airlock-meta", PolicyName="assume", PolicyDocument=json.dumps({
    "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="airlock-meta")["AccessKey"]
print(json.dumps({"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}))
