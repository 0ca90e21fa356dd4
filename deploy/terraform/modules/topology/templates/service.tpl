# Rendered by deploy/terraform/modules/topology: ${description}.
# Settings are the flags below; secrets come from LoadCredential= files (or a secret manager)
# through warren-run into the environment (${secrets_file} says which), never argv.
[Unit]
Description=${description}
After=network-online.target
Wants=network-online.target

[Service]
EnvironmentFile=${env_file}
%{ for name, path in credentials ~}
LoadCredential=${name}:${path}
%{ endfor ~}
ExecStart=${exec_start}
# SIGTERM drains: agents get GOAWAY and move, in-flight requests finish.
KillSignal=SIGTERM
TimeoutStopSec=${stop_timeout}
Restart=always
RestartSec=2
DynamicUser=yes
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
LimitNOFILE=1048576
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
