-- 0003: imaging: scans (= FHIR ImagingStudy), series, instances, files and
-- the reading work-list.

CREATE SEQUENCE scan_number_seq;

CREATE TABLE scans (
    id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id          uuid NOT NULL REFERENCES organizations (id),
    patient_id               uuid NOT NULL,
    scan_number              text NOT NULL
                             DEFAULT 'S' || lpad(nextval('scan_number_seq')::text, 10, '0'),
    -- IPC-1 / OBR-18 / (site-specific) ORC-3; DICOM (0008,0050) caps it
    -- at 16 characters, but a longer one from a sender is kept as sent.
    accession_number         text,
    -- DICOM (0020,000D): digits and dots, at most 64 characters.
    study_instance_uid       text
                             CHECK (study_instance_uid ~ '^[0-9]+(\.[0-9]+)*$'
                                    AND length(study_instance_uid) <= 64),
    placer_order_number      text,
    filler_order_number      text,
    requested_procedure_id   text,
    -- DICOM modality code (CT, MR, CR, DX, US, MG, NM, PT, XA, ...).
    scan_type                text CHECK (scan_type ~ '^[A-Z0-9_ ]{1,16}$'),
    body_part                text,
    laterality               text CHECK (laterality IN ('left', 'right',
                                                        'bilateral', 'unpaired')),
    procedure_code           text,
    procedure_code_system    text,
    procedure_description    text,
    study_description        text,
    clinical_indication      text,
    priority                 text NOT NULL DEFAULT 'routine'
                             CHECK (priority IN ('routine', 'urgent', 'stat', 'asap')),
    status                   text NOT NULL DEFAULT 'ordered'
                             CHECK (status IN ('ordered', 'scheduled', 'in_progress',
                                               'completed', 'reported',
                                               'cancelled', 'entered_in_error')),
    ordered_at               timestamptz,
    scheduled_at             timestamptz,
    acquisition_date         timestamptz,
    completed_at             timestamptz,
    referring_physician_name text,
    -- The referring physician's id as the sender gave it (XCN.1).
    referring_physician_id   text,
    referring_user_id        uuid,
    technician_id            uuid,
    performing_facility      text,
    station_name             text,
    number_of_series         integer NOT NULL DEFAULT 0
                             CHECK (number_of_series >= 0),
    number_of_instances      integer NOT NULL DEFAULT 0
                             CHECK (number_of_instances >= 0),
    notes                    text,
    source                   text NOT NULL DEFAULT 'manual'
                             CHECK (source IN ('hl7v2', 'fhir', 'dicom', 'manual',
                                               'import')),
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT scans_scan_number_organization_id_key
        UNIQUE (scan_number, organization_id),
    CONSTRAINT scans_organization_id_study_instance_uid_key
        UNIQUE (organization_id, study_instance_uid),
    CONSTRAINT scans_organization_id_id_key UNIQUE (organization_id, id),
    FOREIGN KEY (organization_id, patient_id)
        REFERENCES patients (organization_id, id),
    FOREIGN KEY (organization_id, technician_id)
        REFERENCES users (organization_id, id) ON DELETE SET NULL (technician_id),
    FOREIGN KEY (organization_id, referring_user_id)
        REFERENCES users (organization_id, id)
        ON DELETE SET NULL (referring_user_id)
);

CREATE INDEX scans_organization_status_priority_idx
    ON scans (organization_id, status, priority);
CREATE INDEX scans_organization_accession_idx
    ON scans (organization_id, accession_number)
    WHERE accession_number IS NOT NULL;
CREATE INDEX scans_organization_placer_order_idx
    ON scans (organization_id, placer_order_number)
    WHERE placer_order_number IS NOT NULL;
CREATE INDEX scans_organization_filler_order_idx
    ON scans (organization_id, filler_order_number)
    WHERE filler_order_number IS NOT NULL;
CREATE INDEX scans_patient_idx ON scans (organization_id, patient_id);
CREATE INDEX scans_technician_idx ON scans (technician_id)
    WHERE technician_id IS NOT NULL;
CREATE INDEX scans_referring_user_idx ON scans (referring_user_id)
    WHERE referring_user_id IS NOT NULL;

CREATE TRIGGER scans_set_updated_at BEFORE UPDATE ON scans
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- DICOM series of a study (FHIR ImagingStudy.series).
CREATE TABLE scan_series (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id      uuid NOT NULL,
    scan_id              uuid NOT NULL,
    series_instance_uid  text NOT NULL
                         CHECK (series_instance_uid ~ '^[0-9]+(\.[0-9]+)*$'
                                AND length(series_instance_uid) <= 64),
    series_number        integer,
    modality             text CHECK (modality ~ '^[A-Z0-9_ ]{1,16}$'),
    body_part            text,
    laterality           text CHECK (laterality IN ('left', 'right',
                                                    'bilateral', 'unpaired')),
    series_description   text,
    number_of_instances  integer NOT NULL DEFAULT 0
                         CHECK (number_of_instances >= 0),
    started_at           timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT scan_series_organization_id_series_instance_uid_key
        UNIQUE (organization_id, series_instance_uid),
    CONSTRAINT scan_series_organization_id_id_key UNIQUE (organization_id, id),
    FOREIGN KEY (organization_id, scan_id)
        REFERENCES scans (organization_id, id) ON DELETE CASCADE
);

CREATE INDEX scan_series_scan_idx ON scan_series (scan_id, series_number);

CREATE TRIGGER scan_series_set_updated_at BEFORE UPDATE ON scan_series
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- DICOM SOP instances of a series (FHIR ImagingStudy.series.instance).
CREATE TABLE scan_instances (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id   uuid NOT NULL,
    series_id         uuid NOT NULL,
    sop_instance_uid  text NOT NULL
                      CHECK (sop_instance_uid ~ '^[0-9]+(\.[0-9]+)*$'
                             AND length(sop_instance_uid) <= 64),
    sop_class_uid     text NOT NULL
                      CHECK (sop_class_uid ~ '^[0-9]+(\.[0-9]+)*$'
                             AND length(sop_class_uid) <= 64),
    instance_number   integer,
    number_of_frames  integer CHECK (number_of_frames >= 0),
    title             text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT scan_instances_organization_id_sop_instance_uid_key
        UNIQUE (organization_id, sop_instance_uid),
    CONSTRAINT scan_instances_organization_id_id_key
        UNIQUE (organization_id, id),
    FOREIGN KEY (organization_id, series_id)
        REFERENCES scan_series (organization_id, id) ON DELETE CASCADE
);

CREATE INDEX scan_instances_series_idx
    ON scan_instances (series_id, instance_number);

CREATE TRIGGER scan_instances_set_updated_at BEFORE UPDATE ON scan_instances
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Files belonging to a scan: DICOM objects, rendered images, documents.
-- The bytes live in object storage or PACS; this row says where.
CREATE TABLE scan_files (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id   uuid NOT NULL,
    scan_id           uuid NOT NULL,
    instance_id       uuid,
    file_name         text NOT NULL,
    storage_uri       text NOT NULL,
    file_type         text NOT NULL DEFAULT 'dicom'
                      CHECK (file_type IN ('dicom', 'image', 'document',
                                           'archive', 'other')),
    mime_type         text,
    file_size_bytes   bigint CHECK (file_size_bytes >= 0),
    sha256            bytea CHECK (octet_length(sha256) = 32),
    is_processed      boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organization_id, scan_id)
        REFERENCES scans (organization_id, id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, instance_id)
        REFERENCES scan_instances (organization_id, id)
        ON DELETE SET NULL (instance_id)
);

CREATE INDEX scan_files_scan_idx ON scan_files (scan_id);
CREATE INDEX scan_files_instance_idx ON scan_files (instance_id)
    WHERE instance_id IS NOT NULL;

CREATE TRIGGER scan_files_set_updated_at BEFORE UPDATE ON scan_files
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- The radiologists' reading work-list. At most one open entry per scan.
CREATE TABLE scan_queue (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id      uuid NOT NULL,
    scan_id              uuid NOT NULL,
    -- Higher = read sooner (priority, AI criticality, waiting time).
    priority_score       numeric(10, 3) NOT NULL DEFAULT 0,
    assigned_to_user_id  uuid,
    status               text NOT NULL DEFAULT 'waiting'
                         CHECK (status IN ('waiting', 'assigned', 'in_progress',
                                           'completed', 'cancelled')),
    queue_entered_at     timestamptz NOT NULL DEFAULT now(),
    assigned_at          timestamptz,
    started_at           timestamptz,
    completed_at         timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (status NOT IN ('assigned', 'in_progress')
           OR assigned_to_user_id IS NOT NULL),
    FOREIGN KEY (organization_id, scan_id)
        REFERENCES scans (organization_id, id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, assigned_to_user_id)
        REFERENCES users (organization_id, id)
        ON DELETE SET NULL (assigned_to_user_id)
);

CREATE UNIQUE INDEX scan_queue_open_scan_key ON scan_queue (scan_id)
    WHERE status IN ('waiting', 'assigned', 'in_progress');
CREATE INDEX scan_queue_worklist_idx
    ON scan_queue (organization_id, status, priority_score DESC,
                   queue_entered_at);
CREATE INDEX scan_queue_assignee_idx
    ON scan_queue (assigned_to_user_id, status)
    WHERE assigned_to_user_id IS NOT NULL;

CREATE TRIGGER scan_queue_set_updated_at BEFORE UPDATE ON scan_queue
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
