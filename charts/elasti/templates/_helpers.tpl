{{- define "elasti.tag" -}}{{ default .Chart.AppVersion .Values.image.tag }}{{- end -}}
{{- define "elasti.labels" -}}
app.kubernetes.io/part-of: elasti
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
{{- define "elasti.controller" -}}elasti-controller{{- end -}}
{{- define "elasti.resolver" -}}elasti-resolver{{- end -}}
{{- define "elasti.podSecurity" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities: {drop: [ALL]}
  seccompProfile: {type: RuntimeDefault}
{{- end -}}
{{- /* Namespaces that need Roles when rbac.namespaced is on: the watched ones and the release's. */ -}}
{{- define "elasti.roleNamespaces" -}}
{{- $out := list .Release.Namespace -}}
{{- range .Values.watchNamespaces }}{{ if not (has . $out) }}{{ $out = append $out . }}{{ end }}{{ end -}}
{{- join "," $out -}}
{{- end -}}
{{- /* The documents of a multi-document YAML string, as a YAML list: read it with fromYamlArray. */ -}}
{{- define "elasti.documents" -}}
{{- $docs := list -}}
{{- range regexSplit "(?m)^---[ \\t]*$" . -1 }}{{ with fromYaml . }}{{ $docs = append $docs . }}{{ end }}{{ end -}}
{{- toYaml $docs -}}
{{- end -}}

{{- /* A duration as the schema allows it (500ms, 4s, 1m), in milliseconds, for comparisons. */ -}}
{{- define "elasti.milliseconds" -}}
{{- $n := regexFind "^[0-9]+" . -}}
{{- mul ($n | int64) (get (dict "ms" 1 "s" 1000 "m" 60000) (trimPrefix $n .)) -}}
{{- end -}}
