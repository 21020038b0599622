-- One database per server, as `ferry stack up` creates them.
CREATE DATABASE mlflow;
CREATE DATABASE mlflow_auth;
CREATE DATABASE prefect;
CREATE DATABASE optuna;
