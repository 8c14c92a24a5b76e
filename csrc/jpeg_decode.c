/* JPEG decoding through the system's libjpeg(-turbo): JFIF bytes in, packed RGB8 out, with
 * optional DCT scaling (1/2, 1/4, 1/8). Warnings (truncated data, corrupt segments) are
 * errors here, so a damaged frame is never returned as a grey-filled picture; the Rust side
 * then tries its pure-Rust decoder, which is more lenient on merely unusual files.
 *
 * Hostile files: the caller checks the header's dimensions before asking for pixels (and
 * sizes `out` from them); here a progress monitor stops a progressive file past
 * `max_scans` scans (each scan re-reads the whole coefficient buffer, so a small file of
 * thousands of scans costs minutes of CPU; libjpeg-turbo's advice is about 100), and
 * libjpeg's own working memory is capped at `max_memory` bytes. Refusals for these limits
 * return -2, so the caller does not retry them with another decoder. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <setjmp.h>
#include <jpeglib.h>
#include <jerror.h>

struct fc_derror {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int limit; /* set when a limit, not damage, stopped the decode */
    char message[JMSG_LENGTH_MAX];
};

struct fc_dprogress {
    struct jpeg_progress_mgr pub;
    int max_scans;
};

/* Heap state, so its fields are well defined after longjmp. */
struct fc_dstate {
    struct jpeg_decompress_struct cinfo;
    struct fc_derror error;
    struct fc_dprogress progress;
};

static void fc_derror_exit(j_common_ptr cinfo) {
    struct fc_derror *err = (struct fc_derror *)cinfo->err;
    int code = cinfo->err->msg_code;
    /* libjpeg reports an exhausted max_memory_to_use as a missing backing store. */
    if (code == JERR_NO_BACKING_STORE || code == JERR_OUT_OF_MEMORY) {
        err->limit = 1;
    }
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
}

/* msg_level < 0 is a warning: treat it as fatal. Trace messages (>= 0) are ignored. */
static void fc_demit(j_common_ptr cinfo, int msg_level) {
    if (msg_level < 0) {
        fc_derror_exit(cinfo);
    }
}

/* Called between passes and, while a progressive file is read, once per scan and row
 * group: the place to count scans before the next one is decoded. */
static void fc_dprogress_check(j_common_ptr cinfo) {
    struct fc_dprogress *progress = (struct fc_dprogress *)cinfo->progress;
    j_decompress_ptr dinfo = (j_decompress_ptr)cinfo;
    if (cinfo->is_decompressor && dinfo->input_scan_number > progress->max_scans) {
        struct fc_derror *err = (struct fc_derror *)cinfo->err;
        err->limit = 1;
        snprintf(err->message, sizeof err->message,
                 "progressive JPEG has more than %d scans", progress->max_scans);
        longjmp(err->jump, 1);
    }
}

static struct fc_dstate *fc_dopen(int max_scans) {
    struct fc_dstate *st = calloc(1, sizeof(struct fc_dstate));
    if (st == NULL) {
        return NULL;
    }
    st->cinfo.err = jpeg_std_error(&st->error.pub);
    st->error.pub.error_exit = fc_derror_exit;
    st->error.pub.emit_message = fc_demit;
    st->progress.pub.progress_monitor = fc_dprogress_check;
    st->progress.max_scans = max_scans;
    return st;
}

static void fc_dsetup(struct fc_dstate *st, const unsigned char *jpeg, unsigned long len,
                      unsigned scale_denom, unsigned long max_memory) {
    jpeg_create_decompress(&st->cinfo);
    st->cinfo.mem->max_memory_to_use = (long)max_memory;
    st->cinfo.progress = &st->progress.pub;
    jpeg_mem_src(&st->cinfo, jpeg, len);
    jpeg_read_header(&st->cinfo, TRUE);
    st->cinfo.out_color_space = JCS_RGB;
    st->cinfo.scale_num = 1;
    st->cinfo.scale_denom = scale_denom;
    st->cinfo.dct_method = JDCT_ISLOW;
    jpeg_calc_output_dimensions(&st->cinfo);
}

/* Decodes `jpeg` at 1/scale_denom. Sets *width and *height of the output; with `out` NULL
 * stops there (headers only), else decodes into `out`, which must hold exactly
 * width * height * 3 bytes (`out_len`). Returns 0; -1 with a message in `err` for a file
 * libjpeg cannot decode; -2 when a limit (scans, memory) refused it. */
int fc_jpeg_decode_rgb(const unsigned char *jpeg, unsigned long len, unsigned scale_denom,
                       int max_scans, unsigned long max_memory, unsigned char *out,
                       size_t out_len, unsigned *width, unsigned *height, char *err,
                       size_t err_len) {
    struct fc_dstate *st = fc_dopen(max_scans);
    if (st == NULL) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    if (setjmp(st->error.jump)) {
        int rc = st->error.limit ? -2 : -1;
        snprintf(err, err_len, "%s", st->error.message);
        jpeg_destroy_decompress(&st->cinfo);
        free(st);
        return rc;
    }
    fc_dsetup(st, jpeg, len, scale_denom, max_memory);
    *width = st->cinfo.output_width;
    *height = st->cinfo.output_height;
    size_t stride = (size_t)st->cinfo.output_width * 3;
    if (out == NULL) {
        jpeg_destroy_decompress(&st->cinfo);
        free(st);
        return 0;
    }
    if (st->cinfo.output_components != 3 || stride * st->cinfo.output_height != out_len) {
        snprintf(err, err_len, "output buffer does not match the decoded size");
        jpeg_destroy_decompress(&st->cinfo);
        free(st);
        return -1;
    }
    jpeg_start_decompress(&st->cinfo);
    while (st->cinfo.output_scanline < st->cinfo.output_height) {
        JSAMPROW rows[4];
        int n = 0;
        for (; n < 4 && st->cinfo.output_scanline + n < st->cinfo.output_height; n++) {
            rows[n] = out + (size_t)(st->cinfo.output_scanline + n) * stride;
        }
        jpeg_read_scanlines(&st->cinfo, rows, n);
    }
    jpeg_finish_decompress(&st->cinfo);
    jpeg_destroy_decompress(&st->cinfo);
    free(st);
    return 0;
}
