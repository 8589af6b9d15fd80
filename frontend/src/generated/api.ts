/* Generated from fleet_rlm.server.app (OpenAPI) by `npm run gen:types`. Do not edit: change the Python models
 * and regenerate; `npm run check:types` fails when this file is stale. */

export type paths = {
    "/api/v1/documents/{document_id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Get Document */
        get: operations["get_document_api_v1_documents__document_id__get"];
        put?: never;
        post?: never;
        /** Delete Document */
        delete: operations["delete_document_api_v1_documents__document_id__delete"];
        options?: never;
        head?: never;
        /**
         * Patch Document
         * @description Detach a document from its session (kept, out of the agent's view) or attach it again.
         */
        patch: operations["patch_document_api_v1_documents__document_id__patch"];
        trace?: never;
    };
    "/api/v1/health": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Health
         * @description Liveness: the process answers.
         */
        get: operations["health_api_v1_health_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/ready": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Ready
         * @description Readiness: the database answers a query.
         */
        get: operations["ready_api_v1_ready_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/sessions": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** List Sessions */
        get: operations["list_sessions_api_v1_sessions_get"];
        put?: never;
        /** Create Session */
        post: operations["create_session_api_v1_sessions_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/sessions/{session_id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Get Session */
        get: operations["get_session_api_v1_sessions__session_id__get"];
        put?: never;
        post?: never;
        /**
         * Delete Session
         * @description 409 while a turn is in flight (running or waiting on the user): cancel it first.
         */
        delete: operations["delete_session_api_v1_sessions__session_id__delete"];
        options?: never;
        head?: never;
        /** Patch Session */
        patch: operations["patch_session_api_v1_sessions__session_id__patch"];
        trace?: never;
    };
    "/api/v1/sessions/{session_id}/documents": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** List Documents */
        get: operations["list_documents_api_v1_sessions__session_id__documents_get"];
        put?: never;
        /**
         * Upload Document
         * @description Text, Markdown, PDF, JSON, CSV or HTML; too large → 413, binary or unsupported → 415,
         *     unreadable or past an extraction cap (CPU, memory, text) → 422, a name already used in the
         *     session for another text → 409 (the same file again is the existing document, attached).
         *     Text not in UTF-8 is detected and converted (`encoding` names it). The upload streams to a
         *     temporary file and from there to the extraction process: the server never holds it whole.
         */
        post: operations["upload_document_api_v1_sessions__session_id__documents_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/sessions/{session_id}/export": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Export Session
         * @description The session with its documents, turns, answers and every event: JSON, or a Markdown
         *     transcript.
         */
        get: operations["export_session_api_v1_sessions__session_id__export_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/sessions/{session_id}/turns": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** List Turns */
        get: operations["list_turns_api_v1_sessions__session_id__turns_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/sessions/{session_id}/workspace": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** List Workspace */
        get: operations["list_workspace_api_v1_sessions__session_id__workspace_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/sessions/{session_id}/workspace/file": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Read File */
        get: operations["read_file_api_v1_sessions__session_id__workspace_file_get"];
        /**
         * Write File
         * @description The request body becomes the file (created with its directories, or replaced); larger
         *     than FLEET_MAX_WORKSPACE_FILE_MB → 413.
         */
        put: operations["write_file_api_v1_sessions__session_id__workspace_file_put"];
        post?: never;
        /** Delete File */
        delete: operations["delete_file_api_v1_sessions__session_id__workspace_file_delete"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/settings": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Get Settings
         * @description API keys are never returned: `api_key_set` says whether one is configured.
         */
        get: operations["get_settings_api_v1_settings_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        /**
         * Patch Settings
         * @description Saved in {data_dir}/settings.json (mode 0600) and used from the next turn on; sandboxes
         *     already running keep their backend until the session's sandbox restarts.
         */
        patch: operations["patch_settings_api_v1_settings_patch"];
        trace?: never;
    };
    "/api/v1/settings/test-model": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Test Model
         * @description One tiny call to the root model; with a body, of those settings before saving them.
         *     The stored API key goes only to the endpoint it was saved for: a body that points the
         *     models elsewhere is tried with the key it gives, or none.
         */
        post: operations["test_model_api_v1_settings_test_model_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/settings/test-sandbox": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Test Sandbox
         * @description print(1) in a fresh sandbox of the configured (or given) backend, and its health checks:
         *     the facts `fleet doctor` prints.
         */
        post: operations["test_sandbox_api_v1_settings_test_sandbox_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/tenant/limits": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Get Tenant Limits */
        get: operations["get_tenant_limits_api_v1_tenant_limits_get"];
        /**
         * Put Tenant Limits
         * @description Replace the tenant's limits; null (or left out) means the server's. A value above the
         *     server's is refused (422, naming the field and the server's limit); every turn of the tenant
         *     from now on runs within them, a paused one too when it resumes.
         */
        put: operations["put_tenant_limits_api_v1_tenant_limits_put"];
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/turns/{turn_id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Get Turn */
        get: operations["get_turn_api_v1_turns__turn_id__get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/turns/{turn_id}/events": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * List Events
         * @description The stored events of a turn after `after_seq` (live ones stream on the WebSocket).
         */
        get: operations["list_events_api_v1_turns__turn_id__events_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/turns/{turn_id}/feedback": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Give Feedback
         * @description Logged as an assessment on the turn's trace. 409 when tracing is not configured
         *     (FLEET_MLFLOW_TRACKING_URI) or the turn has no trace (not finished, or finished while
         *     tracing was off); 502 when the MLflow store fails.
         */
        post: operations["give_feedback_api_v1_turns__turn_id__feedback_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/v1/usage": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Usage
         * @description Calls, tokens and cost of the tenant's finished turns, per session or per UTC day.
         */
        get: operations["usage_api_v1_usage_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
};
export type webhooks = Record<string, never>;
export type components = {
    schemas: {
        /** Asked */
        Asked: {
            /** Question */
            question: string;
            /**
             * Reply
             * @description The user's reply; null while it waits.
             */
            reply: string | null;
        };
        /** Attachment */
        Attachment: {
            /** Id */
            id: string;
            /** Name */
            name: string;
        };
        /** Body_upload_document_api_v1_sessions__session_id__documents_post */
        Body_upload_document_api_v1_sessions__session_id__documents_post: {
            /** File */
            file: string;
        };
        /** CheckResult */
        CheckResult: {
            /**
             * Checks
             * @description The sandbox check: the backend's health checks, the facts `fleet doctor` prints. Empty for the model check.
             */
            checks?: components["schemas"]["HealthCheck"][];
            /** Detail */
            detail?: string | null;
            /** Duration S */
            duration_s: number;
            /** Message */
            message: string;
            /** Ok */
            ok: boolean;
            /**
             * Problem
             * @description unreachable, auth, unknown_model, sandbox, error; null when ok.
             */
            problem?: string | null;
        };
        /** DocumentDetail */
        DocumentDetail: {
            /**
             * Attached
             * @description In the agent's view; a detached document is kept for the user but neither listed to the agent nor read.
             */
            attached: boolean;
            /** Chars */
            chars: number;
            /**
             * Created At
             * Format: date-time
             */
            created_at: string;
            /**
             * Encoding
             * @description The encoding the text was detected in and converted from, when the upload was not UTF-8.
             */
            encoding?: string | null;
            /** Id */
            id: string;
            /** Kind */
            kind: string;
            /** Name */
            name: string;
            /** Session Id */
            session_id: string;
            /** Sha256 */
            sha256: string;
            /** Size Bytes */
            size_bytes: number;
            /** Start */
            start: number;
            /**
             * Text
             * @description A preview, or the slice asked for with start/length.
             */
            text: string;
        };
        /** DocumentOut */
        DocumentOut: {
            /**
             * Attached
             * @description In the agent's view; a detached document is kept for the user but neither listed to the agent nor read.
             */
            attached: boolean;
            /** Chars */
            chars: number;
            /**
             * Created At
             * Format: date-time
             */
            created_at: string;
            /**
             * Encoding
             * @description The encoding the text was detected in and converted from, when the upload was not UTF-8.
             */
            encoding?: string | null;
            /** Id */
            id: string;
            /** Kind */
            kind: string;
            /** Name */
            name: string;
            /** Session Id */
            session_id: string;
            /** Sha256 */
            sha256: string;
            /** Size Bytes */
            size_bytes: number;
        };
        /** DocumentPatch */
        DocumentPatch: {
            /**
             * Attached
             * @description false detaches the document, true attaches it again.
             */
            attached: boolean;
        };
        /** EventList */
        EventList: {
            /**
             * Events
             * @description Events as on the WebSocket, in seq order.
             */
            events: {
                [key: string]: unknown;
            }[];
            /**
             * Last Seq
             * @description The last seq returned (after_seq when none).
             */
            last_seq: number;
            /** Turn Id */
            turn_id: string;
        };
        /** FeedbackIn */
        FeedbackIn: {
            /** Comment */
            comment?: string | null;
            /** Thumbs Up */
            thumbs_up: boolean;
        };
        /** FeedbackOut */
        FeedbackOut: {
            /** Assessment Id */
            assessment_id: string;
            /** Trace Id */
            trace_id: string;
            /** Turn Id */
            turn_id: string;
        };
        /** HealthCheck */
        HealthCheck: {
            /**
             * Detail
             * @description What holds, or what is wrong and what to do.
             */
            detail: string;
            /**
             * Name
             * @description What is checked, stable: runtime, cgroups, disk_quota, seccomp, open_files, isolation, daytona_sdk, daytona_api, daytona_target, daytona_snapshot, backend.
             */
            name: string;
            /**
             * Status
             * @description ok: in force; warn: a fallback or a note; fail: broken.
             * @enum {string}
             */
            status: "ok" | "warn" | "fail";
        };
        /** HTTPValidationError */
        HTTPValidationError: {
            /** Detail */
            detail?: components["schemas"]["ValidationError"][];
        };
        /**
         * Limits
         * @description Budget limits, one name each (`max_lm_calls`, max_calls's old name, is still taken).
         */
        Limits: {
            /**
             * Max Calls
             * @description Most model calls in a turn's tree.
             */
            max_calls?: number | null;
            /** Max Depth */
            max_depth?: number | null;
            /** Max Iterations */
            max_iterations?: number | null;
            /** Max Tokens */
            max_tokens?: number | null;
            /** Max Usd */
            max_usd?: number | null;
            /** Max Wall S */
            max_wall_s?: number | null;
        };
        /** SessionCreate */
        SessionCreate: {
            /**
             * Title
             * @default New session
             */
            title: string;
        };
        /** SessionList */
        SessionList: {
            /** Items */
            items: components["schemas"]["SessionOut"][];
            /** Limit */
            limit: number;
            /** Offset */
            offset: number;
            /** Total */
            total: number;
        };
        /** SessionOut */
        SessionOut: {
            /** Archived */
            archived: boolean;
            /**
             * Created At
             * Format: date-time
             */
            created_at: string;
            /** Id */
            id: string;
            /** Title */
            title: string;
            /**
             * Turns
             * @description How many turns it has (in the session list).
             */
            turns?: number | null;
            /**
             * Updated At
             * Format: date-time
             */
            updated_at: string;
            /** User Id */
            user_id: string;
        };
        /** SessionPatch */
        SessionPatch: {
            /** Archived */
            archived?: boolean | null;
            /** Title */
            title?: string | null;
        };
        /** SettingsOut */
        SettingsOut: {
            /** Api Base */
            api_base: string | null;
            /** Api Key Set */
            api_key_set: boolean;
            /** Auth */
            auth: string;
            /** Daytona Api Key Set */
            daytona_api_key_set: boolean;
            /** Limits */
            limits: {
                [key: string]: number;
            };
            /**
             * Model Ready
             * @description An API key or api_base is set, or the root model's provider key (e.g. OPENAI_API_KEY) is in the server's environment.
             */
            model_ready: boolean;
            /**
             * Provider Keys
             * @description The environment variables that hold a key for the root model's provider (any one will do).
             */
            provider_keys: string[];
            /** Root Model */
            root_model: string;
            /**
             * Sandbox
             * @enum {string}
             */
            sandbox: "local" | "gvisor" | "unsafe-local" | "daytona";
            /** Sub Model */
            sub_model: string | null;
        };
        /**
         * SettingsPatch
         * @description Only the fields given change; null clears an optional one. Keys are write-only.
         */
        SettingsPatch: {
            /** Api Base */
            api_base?: string | null;
            /** Api Key */
            api_key?: string | null;
            /** Daytona Api Key */
            daytona_api_key?: string | null;
            limits?: components["schemas"]["Limits"] | null;
            /** Root Model */
            root_model?: string | null;
            /** Sandbox */
            sandbox?: ("local" | "gvisor" | "unsafe-local" | "daytona") | null;
            /** Sub Model */
            sub_model?: string | null;
        };
        /** TenantLimitsOut */
        TenantLimitsOut: {
            /** @description What a turn of the tenant runs with at most: the lower of the two; a message may only lower it further. */
            effective: components["schemas"]["Limits"];
            /** @description The server's limits (its settings). */
            server: components["schemas"]["Limits"];
            /** @description The tenant's own limits; null: the server's. */
            tenant: components["schemas"]["Limits"];
        };
        /** TurnOut */
        TurnOut: {
            /** Answer */
            answer: string | null;
            /**
             * Asked
             * @description Every question the turn asked the user, in order, with the reply it got.
             */
            asked?: components["schemas"]["Asked"][];
            /**
             * Attachments
             * @description The documents sent with the message.
             */
            attachments: components["schemas"]["Attachment"][];
            /**
             * Created At
             * Format: date-time
             */
            created_at: string;
            /** Error */
            error: string | null;
            /** Finished At */
            finished_at: string | null;
            /** Id */
            id: string;
            /** Index */
            index: number;
            /**
             * Question
             * @description What the turn asks the user (waiting).
             */
            question?: string | null;
            /** Session Id */
            session_id: string;
            /** @description The status its turn_finished event says, once it ended; interrupted: the server stopped while it ran. */
            status: components["schemas"]["TurnStatus"];
            /**
             * Text
             * @description The message as typed.
             */
            text: string;
            /**
             * Trace Id
             * @description The turn's MLflow trace, when it was traced.
             */
            trace_id?: string | null;
            /** Usage */
            usage: {
                [key: string]: unknown;
            } | null;
            /**
             * User Message
             * @description The message as the agent read it: `text`, then a note naming the attachments.
             */
            user_message: string;
        };
        /**
         * TurnStatus
         * @enum {string}
         */
        TurnStatus: "running" | "waiting" | "ok" | "budget" | "cancelled" | "error" | "interrupted";
        /** UsageReport */
        UsageReport: {
            /**
             * Group
             * @enum {string}
             */
            group: "session" | "day";
            /** Items */
            items: components["schemas"]["UsageRow"][];
            total: components["schemas"]["UsageRow"];
        };
        /** UsageRow */
        UsageRow: {
            /**
             * Calls
             * @default 0
             */
            calls: number;
            /**
             * Completion Tokens
             * @default 0
             */
            completion_tokens: number;
            /**
             * Key
             * @description The session id, or the day (YYYY-MM-DD, UTC).
             */
            key: string;
            /**
             * Prompt Tokens
             * @default 0
             */
            prompt_tokens: number;
            /** Title */
            title?: string | null;
            /**
             * Tokens
             * @default 0
             */
            tokens: number;
            /**
             * Turns
             * @default 0
             */
            turns: number;
            /**
             * Usd
             * @default 0
             */
            usd: number;
            /**
             * Usd Unknown Calls
             * @description Calls of models without a known price: `usd` leaves them out (a lower bound, or unknown if all).
             * @default 0
             */
            usd_unknown_calls: number;
        };
        /** ValidationError */
        ValidationError: {
            /** Context */
            ctx?: Record<string, never>;
            /** Input */
            input?: unknown;
            /** Location */
            loc: (string | number)[];
            /** Message */
            msg: string;
            /** Error Type */
            type: string;
        };
        /** WorkspaceEntry */
        WorkspaceEntry: {
            /**
             * Modified
             * Format: date-time
             */
            modified: string;
            /** Name */
            name: string;
            /** Path */
            path: string;
            /**
             * Protected
             * @description The service's own files (meta/): not deleted over the API.
             * @default false
             */
            protected: boolean;
            /** Size */
            size: number;
            /**
             * Type
             * @enum {string}
             */
            type: "file" | "dir" | "symlink" | "other";
        };
        /** WorkspaceListing */
        WorkspaceListing: {
            /** Entries */
            entries: components["schemas"]["WorkspaceEntry"][];
            /** Path */
            path: string;
        };
    };
    responses: never;
    parameters: never;
    requestBodies: never;
    headers: never;
    pathItems: never;
};
export type $defs = Record<string, never>;
export interface operations {
    get_document_api_v1_documents__document_id__get: {
        parameters: {
            query?: {
                /** @description Characters; default a preview. */
                length?: number | null;
                /** @description First character. */
                start?: number;
            };
            header?: never;
            path: {
                document_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["DocumentDetail"];
                };
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
        };
    };
    delete_document_api_v1_documents__document_id__delete: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                document_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
        };
    };
    patch_document_api_v1_documents__document_id__patch: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                document_id: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["DocumentPatch"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["DocumentOut"];
                };
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
        };
    };
    health_api_v1_health_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": {
                        [key: string]: unknown;
                    };
                };
            };
        };
    };
    ready_api_v1_ready_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": unknown;
                };
            };
        };
    };
    list_sessions_api_v1_sessions_get: {
        parameters: {
            query?: {
                include_archived?: boolean;
                limit?: number;
                offset?: number;
                /** @description Part of the title, any case. */
                q?: string | null;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SessionList"];
                };
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
        };
    };
    create_session_api_v1_sessions_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: {
            content: {
                "application/json": components["schemas"]["SessionCreate"] | null;
            };
        };
        responses: {
            /** @description Successful Response */
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SessionOut"];
                };
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
        };
    };
    get_session_api_v1_sessions__session_id__get: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                session_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SessionOut"];
                };
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
        };
    };
    delete_session_api_v1_sessions__session_id__delete: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                session_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
        };
    };
    patch_session_api_v1_sessions__session_id__patch: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                session_id: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["SessionPatch"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SessionOut"];
                };
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
        };
    };
    list_documents_api_v1_sessions__session_id__documents_get: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                session_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["DocumentOut"][];
                };
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
        };
    };
    upload_document_api_v1_sessions__session_id__documents_post: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                session_id: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "multipart/form-data": components["schemas"]["Body_upload_document_api_v1_sessions__session_id__documents_post"];
            };
        };
        responses: {
            /** @description Successful Response */
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["DocumentOut"];
                };
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
        };
    };
    export_session_api_v1_sessions__session_id__export_get: {
        parameters: {
            query?: {
                format?: "json" | "markdown";
            };
            header?: never;
            path: {
                session_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": unknown;
                };
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
        };
    };
    list_turns_api_v1_sessions__session_id__turns_get: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                session_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TurnOut"][];
                };
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
        };
    };
    list_workspace_api_v1_sessions__session_id__workspace_get: {
        parameters: {
            query?: {
                /** @description Relative to the workspace; no '..', no leading '/'. */
                path?: string;
            };
            header?: never;
            path: {
                session_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["WorkspaceListing"];
                };
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
        };
    };
    read_file_api_v1_sessions__session_id__workspace_file_get: {
        parameters: {
            query?: {
                /** @description Relative to the workspace; no '..', no leading '/'. */
                path?: string;
            };
            header?: never;
            path: {
                session_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": unknown;
                };
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
        };
    };
    write_file_api_v1_sessions__session_id__workspace_file_put: {
        parameters: {
            query?: {
                /** @description Relative to the workspace; no '..', no leading '/'. */
                path?: string;
            };
            header?: never;
            path: {
                session_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": {
                        [key: string]: unknown;
                    };
                };
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
        };
    };
    delete_file_api_v1_sessions__session_id__workspace_file_delete: {
        parameters: {
            query?: {
                /** @description Relative to the workspace; no '..', no leading '/'. */
                path?: string;
            };
            header?: never;
            path: {
                session_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
        };
    };
    get_settings_api_v1_settings_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SettingsOut"];
                };
            };
        };
    };
    patch_settings_api_v1_settings_patch: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["SettingsPatch"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SettingsOut"];
                };
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
        };
    };
    test_model_api_v1_settings_test_model_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: {
            content: {
                "application/json": components["schemas"]["SettingsPatch"] | null;
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["CheckResult"];
                };
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
        };
    };
    test_sandbox_api_v1_settings_test_sandbox_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: {
            content: {
                "application/json": components["schemas"]["SettingsPatch"] | null;
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["CheckResult"];
                };
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
        };
    };
    get_tenant_limits_api_v1_tenant_limits_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TenantLimitsOut"];
                };
            };
        };
    };
    put_tenant_limits_api_v1_tenant_limits_put: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["Limits"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TenantLimitsOut"];
                };
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
        };
    };
    get_turn_api_v1_turns__turn_id__get: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                turn_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TurnOut"];
                };
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
        };
    };
    list_events_api_v1_turns__turn_id__events_get: {
        parameters: {
            query?: {
                after_seq?: number;
                limit?: number | null;
            };
            header?: never;
            path: {
                turn_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["EventList"];
                };
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
        };
    };
    give_feedback_api_v1_turns__turn_id__feedback_post: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                turn_id: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["FeedbackIn"];
            };
        };
        responses: {
            /** @description Successful Response */
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["FeedbackOut"];
                };
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
        };
    };
    usage_api_v1_usage_get: {
        parameters: {
            query?: {
                group?: "session" | "day";
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["UsageReport"];
                };
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
        };
    };
}
